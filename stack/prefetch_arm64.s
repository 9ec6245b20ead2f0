#include "textflag.h"

// func prefetch6(w *uint32, at *uint32, n int)
TEXT ·prefetch6(SB), NOSPLIT|NOFRAME, $0-24
	MOVD w+0(FP), R0
	MOVD at+8(FP), R1
	MOVD n+16(FP), R2
	CBZ R2, done
loop:
	MOVWU.P 4(R1), R3
	ADD R3<<2, R0, R4
	PRFM (R4), PLDL1KEEP
	SUB $1, R2
	CBNZ R2, loop
done:
	RET
