package main

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/stack"
)

// TestUDPEchoVeth: a Linux UDP socket in cli, its veth at the default offloads (TX checksum offload on, so
// its datagrams reach xdpnet with partial checksums), talks to a UDP socket of xdpnet's stack, which echoes
// every datagram: at least 99% of 500 come back intact.
func TestUDPEchoVeth(t *testing.T) {
	var echo *stack.UDPConn
	l := startLab(t, nil, func(s *stack.Stack) {
		var err error
		if echo, err = s.ListenUDP(netip.MustParseAddrPort(srvAddr + ":7")); err != nil {
			t.Fatal(err)
		}
		go func() {
			buf := make([]byte, 2048)
			for {
				n, from, err := echo.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				echo.WriteToUDPAddrPort(buf[:n], from)
			}
		}()
	})
	t.Cleanup(func() { echo.Close() })
	if f, err := l.cli.Features("eth0"); err != nil || !f["tx-checksum-ip-generic"] {
		t.Fatalf("cli eth0 TX checksum offload is not on (%v): this test is about veths at their defaults", err)
	}
	var c *net.UDPConn
	if err := l.cli.Do(func() (err error) {
		c, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(srvAddr+":7")))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 500
	msg := func(i int) []byte {
		b := make([]byte, 8+i%1400)
		binary.BigEndian.PutUint32(b, uint32(i))
		for j := 4; j < len(b); j++ {
			b[j] = byte(i + j)
		}
		return b
	}
	got := make(chan int)
	go func() {
		ok, buf := 0, make([]byte, 2048)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		for ok < n {
			k, err := c.Read(buf)
			if err != nil {
				break
			}
			if k >= 4 && bytes.Equal(buf[:k], msg(int(binary.BigEndian.Uint32(buf)))) {
				ok++
			}
		}
		got <- ok
	}()
	for i := range n {
		if _, err := c.Write(msg(i)); err != nil {
			t.Fatal(err)
		}
		if i%25 == 24 {
			time.Sleep(2 * time.Millisecond)
		}
	}
	if ok := <-got; ok < n*99/100 {
		t.Errorf("%d of %d datagrams echoed intact, want at least 99%% (stack stats %+v)", ok, n, l.s.Stats())
	}
}
