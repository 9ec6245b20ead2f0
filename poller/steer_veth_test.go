package poller

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/xdpnet/xdpnet/internal/netlab"
	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/proto"
)

// udpEcho answers every UDP datagram it gets with the same payload, from the port it was sent to (a
// stand-in for a DNS server), over IPv4 and IPv6, and keeps a copy of every frame it is given. Anything that
// is not UDP it drops as filtered: the test then sees it in the copies, which is what it looks for.
type udpEcho struct {
	mu  *sync.Mutex
	got *[][]byte
}

func (h *udpEcho) Process(b *pipeline.Batch) {
	for i := range b.Packets() {
		p := &b.Pkts[i]
		d := p.Data()
		h.mu.Lock()
		*h.got = append(*h.got, bytes.Clone(d))
		h.mu.Unlock()
		if !echoUDP(d) {
			p.Drop(pipeline.DropFiltered)
			continue
		}
		p.Send(p.InPort)
	}
}

func (h *udpEcho) Tick(*pipeline.Batch) int64 { return 0 }

// echoUDP turns a UDP frame (untagged, or with one 802.1Q tag, which the reply keeps) into its reply in
// place: MACs, addresses and ports swapped, the UDP checksum computed in full (a Linux peer with offloads on
// sends a partial one, which its own stack would refuse coming back).
func echoUDP(d []byte) bool {
	if len(d) < 18 {
		return false
	}
	l3, et := 14, binary.BigEndian.Uint16(d[12:])
	if et == 0x8100 {
		l3, et = 18, binary.BigEndian.Uint16(d[16:])
	}
	var src, dst netip.Addr
	var l4 []byte
	switch et {
	case 0x0800:
		ip := d[l3:]
		if len(ip) < 20 || ip[0]>>4 != 4 || ip[9] != 17 {
			return false
		}
		hl := int(ip[0]&0xf) * 4
		if len(ip) < hl+8 {
			return false
		}
		var s, t [4]byte
		copy(s[:], ip[12:16])
		copy(t[:], ip[16:20])
		copy(ip[12:16], t[:])
		copy(ip[16:20], s[:])
		src, dst, l4 = netip.AddrFrom4(t), netip.AddrFrom4(s), ip[hl:]
	case 0x86dd:
		ip := d[l3:]
		if len(ip) < 48 || ip[6] != 17 {
			return false
		}
		var s, t [16]byte
		copy(s[:], ip[8:24])
		copy(t[:], ip[24:40])
		copy(ip[8:24], t[:])
		copy(ip[24:40], s[:])
		src, dst, l4 = netip.AddrFrom16(t), netip.AddrFrom16(s), ip[40:]
	default:
		return false
	}
	n := int(binary.BigEndian.Uint16(l4[4:]))
	if n < 8 || n > len(l4) {
		return false
	}
	l4 = l4[:n]
	var mac [6]byte
	copy(mac[:], d[0:6])
	copy(d[0:6], d[6:12])
	copy(d[6:12], mac[:])
	sp := binary.BigEndian.Uint16(l4[0:])
	binary.BigEndian.PutUint16(l4[0:], binary.BigEndian.Uint16(l4[2:]))
	binary.BigEndian.PutUint16(l4[2:], sp)
	binary.BigEndian.PutUint16(l4[6:], 0)
	c := ^proto.Fold(proto.Sum(l4, proto.PseudoHeaderSum(src, dst, 17, n)))
	if c == 0 {
		c = 0xffff // RFC 768: a computed zero is sent as all ones
	}
	binary.BigEndian.PutUint16(l4[6:], c)
	return true
}

// isUDPTo53 reports whether f is an untagged IPv4 or IPv6 UDP packet to port 53.
func isUDPTo53(f []byte) bool {
	if len(f) < 14 {
		return false
	}
	var l4 []byte
	switch ip := f[14:]; binary.BigEndian.Uint16(f[12:]) {
	case 0x0800:
		if len(ip) < 20 || ip[9] != 17 || len(ip) < int(ip[0]&0xf)*4+4 {
			return false
		}
		l4 = ip[int(ip[0]&0xf)*4:]
	case 0x86dd:
		if len(ip) < 44 || ip[6] != 17 {
			return false
		}
		l4 = ip[40:]
	default:
		return false
	}
	return binary.BigEndian.Uint16(l4[2:]) == 53
}

// steerHosts joins dut eth0 (198.18.0.1/24, 2001:2::1/64) and peer eth0 (.2, ::2) with a veth pair at its
// default offloads, one queue, and waits until IPv6 duplicate address detection is over on both.
func steerHosts(t *testing.T) (dut, peer *netlab.Host, v *netlab.Veth) {
	t.Helper()
	lab := netlab.NewT(t)
	dut, peer = lab.MustAddHost(t, "dut"), lab.MustAddHost(t, "peer")
	v, err := lab.LinkWith(dut, "eth0", peer, "eth0", netlab.LinkOptions{Queues: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		h           *netlab.Host
		addr, addr6 string
	}{{dut, "198.18.0.1/24", "2001:2::1/64"}, {peer, "198.18.0.2/24", "2001:2::2/64"}} {
		for _, a := range []string{c.addr, c.addr6} {
			if err := c.h.AddAddr("eth0", a); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.h.SetUp("eth0"); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range []*netlab.Host{dut, peer} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			out, err := h.Run(context.Background(), "ip", "-6", "addr", "show", "dev", "eth0", "tentative")
			if err != nil {
				t.Fatal(err)
			}
			if len(bytes.TrimSpace(out)) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: IPv6 addresses still tentative after 10s:\n%s", h.Name(), out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return dut, peer, v
}

// udpIn opens an unconnected UDP socket in h's namespace.
func udpIn(t *testing.T, h *netlab.Host) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	if err := h.Do(func() (err error) { c, err = net.ListenUDP("udp", nil); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestSteerUDP53OnlyVeth: with Steer taking UDP/53, a Linux peer's DNS-like queries over IPv4 and IPv6 are
// answered by the handler on the poller, while ping, ping -6, ARP, NDP, UDP to another port (port
// unreachable) and an SSH-like TCP session (ncat) to the same interface are answered by Linux - and none of
// those frames ever reaches the handler. Both veth ends keep their default offloads.
func TestSteerUDP53OnlyVeth(t *testing.T) {
	dut, peer, v := steerHosts(t)
	ncat := netlab.RequireTool(t, "ncat")
	var mu sync.Mutex
	var got [][]byte
	nh := func(*pipeline.QueueInfo) pipeline.Handler { return &udpEcho{mu: &mu, got: &got} }
	p, stop := startPoller(t, dut, Config{Interfaces: []string{"eth0"}, NewHandler: nh, RingSize: 256, FramesPerQueue: 1024,
		Steer: &Steer{Match: []Match{{Protocol: 17, DstPorts: []PortRange{Port(53)}}}}})

	// An SSH-like server in Linux on the dut: banner exchange over TCP/22.
	var ln net.Listener
	if err := dut.Do(func() (err error) { ln, err = net.Listen("tcp", "198.18.0.1:22"); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				c.Write([]byte("SSH-2.0-LinuxOnDut\r\n"))
				line, _ := bufio.NewReader(c).ReadString('\n')
				c.Write([]byte("seen " + line))
			}()
		}
	}()

	// 1. DNS-like queries over both families reach the handler and come back.
	conn := udpIn(t, peer)
	const queries = 20
	for _, server := range []string{"198.18.0.1:53", "[2001:2::1]:53"} {
		to := net.UDPAddrFromAddrPort(netip.MustParseAddrPort(server))
		for i := range queries {
			q := []byte("query " + server + " " + strings.Repeat("x", i))
			if _, err := conn.WriteToUDP(q, to); err != nil {
				t.Fatal(err)
			}
			conn.SetReadDeadline(time.Now().Add(3 * time.Second))
			buf := make([]byte, 2048)
			n, from, err := conn.ReadFromUDP(buf)
			if err != nil {
				t.Fatalf("query %d to %s: no answer: %v (handler got %d frames; stats %+v)", i, server, err, len(got), p.Stats().Ports)
			}
			if !bytes.Equal(buf[:n], q) || from.AddrPort().Port() != 53 {
				t.Fatalf("query %d to %s: answer %q from %v, want the echo from port 53", i, server, buf[:n], from)
			}
		}
	}

	// 2. UDP to another port is Linux's: nothing listens, so the kernel answers port unreachable.
	var c54 *net.UDPConn
	if err := peer.Do(func() (err error) {
		c54, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.MustParseAddrPort("198.18.0.1:54")))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c54.Close()
	c54.Write([]byte("not for xdpnet"))
	c54.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := c54.Read(make([]byte, 64)); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("UDP/54: %v, want connection refused (the kernel's ICMP port unreachable)", err)
	}

	// 3. ARP and NDP are Linux's: the peer forgets the dut, and ping must resolve it again.
	if _, err := peer.Run(context.Background(), "ip", "neigh", "flush", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"-c", "3", "-i", "0.2", "-W", "2", "198.18.0.1"},
		{"-6", "-c", "3", "-i", "0.2", "-W", "2", "2001:2::1"},
	} {
		if out, err := peer.Run(context.Background(), "ping", args...); err != nil {
			t.Fatalf("ping %v: %v\n%s", args, err, out)
		}
	}
	mac := v.A.HWAddr()
	dutMAC := net.HardwareAddr(mac[:]).String()
	for _, a := range []string{"198.18.0.1", "2001:2::1"} {
		out, err := peer.Run(context.Background(), "ip", "neigh", "show", a, "dev", "eth0")
		if err != nil || !strings.Contains(string(out), dutMAC) {
			t.Fatalf("peer's neighbour entry for %s: %q %v, want %s resolved by the dut's kernel", a, out, err, dutMAC)
		}
	}

	// 4. An SSH-like TCP session to the same interface is Linux's.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := peer.Command(ctx, ncat, "--wait", "3", "198.18.0.1", "22")
	cmd.Stdin = strings.NewReader("SSH-2.0-ncat\r\n")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SSH-2.0-LinuxOnDut") || !strings.Contains(string(out), "seen SSH-2.0-ncat") {
		t.Fatalf("ncat to 198.18.0.1:22: %v\n%s", err, out)
	}

	stop()
	// The handler saw the queries and nothing else: no ARP, NDP, ICMP, TCP or UDP/54.
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2*queries {
		t.Errorf("handler got %d frames, want the %d queries", len(got), 2*queries)
	}
	for _, f := range got {
		if !isUDPTo53(f) {
			t.Errorf("handler got a frame that is not UDP/53: %x", f)
		}
	}
	if st := p.Stats().Ports[0]; st.RxPackets != 2*queries || st.TxPackets != 2*queries {
		t.Errorf("port stats rx %d tx %d, want %d each", st.RxPackets, st.TxPackets, 2*queries)
	}
}

// TestSteerOwnProgramVeth: the embedder's own XDP program (here one that takes only the test EtherType)
// redirects into an XSKMAP given as Steer.XSKMaps; the poller registers its socket there and attaches
// nothing, so the embedder's program stays in charge and everything else reaches Linux.
func TestSteerOwnProgramVeth(t *testing.T) {
	dut, peer, v := twoHosts(t)
	xsks, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.XSKMap, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer xsks.Close()
	// if (*(u16 *)(data + 12) != htons(0x88b5)) return XDP_PASS; return bpf_redirect_map(&xsks, queue, XDP_PASS);
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "Dual BSD/GPL", Instructions: asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, 0, asm.Word),
		asm.LoadMem(asm.R3, asm.R1, 4, asm.Word),
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, 14),
		asm.JGT.Reg(asm.R4, asm.R3, "pass"),
		asm.LoadMem(asm.R4, asm.R2, 12, asm.Half),
		asm.JNE.Imm(asm.R4, int32(htons(etherTest)), "pass"),
		asm.LoadMem(asm.R2, asm.R1, 16, asm.Word),
		asm.LoadMapPtr(asm.R1, xsks.FD()),
		asm.Mov.Imm(asm.R3, 2),
		asm.FnRedirectMap.Call(),
		asm.Return(),
		asm.Mov.Imm(asm.R0, 2).WithSymbol("pass"),
		asm.Return(),
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	var l link.Link
	if err := dut.Do(func() error {
		ifc, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifc.Index})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	info, _ := prog.Info()
	ownID, _ := info.ID()

	nh, got := newRecorder(-1)
	p, stop := startPoller(t, dut, Config{Interfaces: []string{"eth0"}, NewHandler: nh, RingSize: 256, FramesPerQueue: 1024,
		Steer: &Steer{XSKMaps: map[string]*ebpf.Map{"eth0": xsks}}})
	if lk, err := dut.Link("eth0"); err != nil || lk.Attrs().Xdp == nil || lk.Attrs().Xdp.ProgId != uint32(ownID) {
		t.Fatalf("eth0 runs %+v (%v), want the embedder's program %d (the poller must not attach its own)", lk.Attrs().Xdp, err, ownID)
	}
	ps := openPacket(t, peer, "eth0")
	const n = 50
	for i := range n {
		ps.send(t, testFrame(v.A.HWAddr(), v.B.HWAddr(), etherTest, i, 64))
		ps.send(t, testFrame(v.A.HWAddr(), v.B.HWAddr(), etherTest+2, i, 64)) // not taken: Linux drops it
	}
	replies := ps.capture(etherReply, n, 5*time.Second)
	stop()
	if len(replies) != n || len(got()) != n {
		t.Fatalf("%d replies and %d frames at the handler, want %d each (stats %+v)", len(replies), len(got()), n, p.Stats().Ports)
	}
	// After Close the embedder's program is still attached and its map still usable.
	if err := xsks.Delete(uint32(0)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Fatalf("embedder's map after the poller closed: %v", err)
	}
	lk, err := dut.Link("eth0")
	if err != nil || lk.Attrs().Xdp == nil || lk.Attrs().Xdp.ProgId != uint32(ownID) {
		t.Fatalf("after the poller closed, eth0 runs %+v (%v), want the embedder's program %d", lk.Attrs().Xdp, err, ownID)
	}
}

// captureUDPFrom53 collects received IPv4 UDP frames from port 53 and the VLAN id each came with (-1: none).
func captureUDPFrom53(ps *packetSock, want int, timeout time.Duration) (frames [][]byte, vids []int) {
	buf, oob := make([]byte, 4096), make([]byte, 256)
	for deadline := time.Now().Add(timeout); len(frames) < want && time.Now().Before(deadline); {
		n, oobn, _, from, err := unix.Recvmsg(ps.fd, buf, oob, 0)
		if err != nil {
			continue
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		f := buf[:n]
		if n < 14+28 || binary.BigEndian.Uint16(f[12:]) != 0x0800 || f[14+9] != 17 || binary.BigEndian.Uint16(f[14+20:]) != 53 {
			continue
		}
		vid := -1
		cmsgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
		for _, c := range cmsgs {
			// struct tpacket_auxdata: status, len, snaplen (u32), mac, net, vlan_tci, vlan_tpid (u16).
			if c.Header.Level == unix.SOL_PACKET && c.Header.Type == unix.PACKET_AUXDATA && len(c.Data) >= 20 &&
				binary.NativeEndian.Uint32(c.Data[0:])&unix.TP_STATUS_VLAN_VALID != 0 {
				vid = int(binary.NativeEndian.Uint16(c.Data[16:]) & 0xfff)
			}
		}
		frames, vids = append(frames, bytes.Clone(f)), append(vids, vid)
	}
	return frames, vids
}

// taggedUDP builds an 802.1Q-tagged IPv4 UDP frame from src to dst port 53 (UDP checksum 0: none, RFC 768).
func taggedUDP(dstMAC, srcMAC [6]byte, vid uint16, src, dst netip.Addr, payload string) []byte {
	f := append(append([]byte(nil), dstMAC[:]...), srcMAC[:]...)
	f = binary.BigEndian.AppendUint16(f, 0x8100)
	f = binary.BigEndian.AppendUint16(f, vid)
	f = binary.BigEndian.AppendUint16(f, 0x0800)
	ip := make([]byte, 20+8+len(payload))
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	s, d := src.As4(), dst.As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	binary.BigEndian.PutUint16(ip[10:], proto.Checksum(ip[:20]))
	binary.BigEndian.PutUint16(ip[20:], 4000)
	binary.BigEndian.PutUint16(ip[22:], 53)
	binary.BigEndian.PutUint16(ip[24:], uint16(8+len(payload)))
	copy(ip[28:], payload)
	return append(f, ip...)
}

// TestSteerVLANVeth: with Steer taking UDP/53 on VLAN 100 only, tagged queries on VLAN 100 reach the handler
// with their tag and are answered with it, while the same queries on VLAN 101 do not reach it (they go to
// the kernel). The test kernel has no 802.1Q module (no VLAN devices), so the peer sends and captures the
// tagged frames itself with AF_PACKET; the tag is in the frame, as on a NIC without rx-vlan-offload.
func TestSteerVLANVeth(t *testing.T) {
	dut, peer, v := twoHosts(t)
	var mu sync.Mutex
	var got [][]byte
	nh := func(*pipeline.QueueInfo) pipeline.Handler { return &udpEcho{mu: &mu, got: &got} }
	_, stop := startPoller(t, dut, Config{Interfaces: []string{"eth0"}, NewHandler: nh, RingSize: 256, FramesPerQueue: 1024,
		Steer: &Steer{Match: []Match{{VLAN: 100, Protocol: 17, DstPorts: []PortRange{Port(53)}}}}})
	ps := openPacket(t, peer, "eth0")
	// The peer's kernel takes the tag off a received frame before AF_PACKET sees it (skb_vlan_untag) and
	// reports it in PACKET_AUXDATA.
	if err := unix.SetsockoptInt(ps.fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
		t.Fatal(err)
	}
	src, dst := netip.MustParseAddr("198.18.100.2"), netip.MustParseAddr("198.18.100.1")
	const n = 10
	for i := range n {
		ps.send(t, taggedUDP(v.A.HWAddr(), v.B.HWAddr(), 100, src, dst, "q100 "+strings.Repeat("z", i)))
		ps.send(t, taggedUDP(v.A.HWAddr(), v.B.HWAddr(), 101, src, dst, "q101 "+strings.Repeat("z", i)))
	}
	replies, vids := captureUDPFrom53(ps, n, 5*time.Second)
	stop()
	if len(replies) != n {
		mu.Lock()
		t.Fatalf("peer captured %d replies, want %d (handler got %d)", len(replies), n, len(got))
	}
	for i, r := range replies {
		want := "q100 " + strings.Repeat("z", i)
		if vids[i] != 100 || !bytes.HasSuffix(r, []byte(want)) {
			t.Errorf("reply %d: VLAN %d %x, want VLAN 100 and payload %q", i, vids[i], r, want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != n {
		t.Errorf("handler got %d frames, want the %d on VLAN 100", len(got), n)
	}
	for _, f := range got {
		if binary.BigEndian.Uint16(f[12:]) != 0x8100 || binary.BigEndian.Uint16(f[14:])&0xfff != 100 {
			t.Errorf("handler got a frame not on VLAN 100: %x", f)
		}
	}
}
