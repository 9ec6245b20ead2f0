#include "textflag.h"

// func prefetch6(w *uint32, at *uint32, n int)
TEXT ·prefetch6(SB), NOSPLIT|NOFRAME, $0-24
	MOVQ w+0(FP), AX
	MOVQ at+8(FP), BX
	MOVQ n+16(FP), CX
	TESTQ CX, CX
	JLE done
loop:
	MOVL (BX), DX
	PREFETCHT0 (AX)(DX*4)
	ADDQ $4, BX
	DECQ CX
	JNZ loop
done:
	RET
