package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/internal/netlab"
)

// TestFirewallBinaryVeth runs the firewall command between two Linux hosts on one subnet,
//
//	a eth0 198.18.0.1/24 --veth-- in0 [firewall] out0 --veth-- eth0 198.18.0.2/24 b
//
// and checks it with the hosts' own stacks: ping crosses it both ways (ARP and ICMP bridged), a TCP connection to
// an allowed port works while one to a dropped port never gets an answer, UDP datagrams to port 54 all arrive and
// the ones to port 53 none, and after SIGTERM the drop counters it prints name the rule's reason with the number
// of datagrams sent.
func TestFirewallBinaryVeth(t *testing.T) {
	netlab.RequireTool(t, "ping")
	lab := netlab.NewT(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "firewall")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	rules := filepath.Join(dir, "rules")
	if err := os.WriteFile(rules, []byte("drop udp to any port 53 reason fw_veth_dns\ndrop tcp to 198.18.0.2 port 22 reason fw_veth_ssh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a, fw, b := lab.MustAddHost(t, "a"), lab.MustAddHost(t, "fw"), lab.MustAddHost(t, "b")
	v1, err := lab.LinkWith(a, "eth0", fw, "in0", netlab.LinkOptions{Queues: 1})
	if err != nil {
		t.Fatal(err)
	}
	v2, err := lab.LinkWith(fw, "out0", b, "eth0", netlab.LinkOptions{Queues: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []netlab.Endpoint{v1.A, v1.B, v2.A, v2.B} {
		// IPv6 off: nothing but the test's own traffic crosses.
		if err := e.Host.Sysctl("net.ipv6.conf."+e.Name+".disable_ipv6", "1"); err != nil {
			t.Fatal(err)
		}
		if err := e.Host.SetUp(e.Name); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.AddAddr("eth0", "198.18.0.1/24"); err != nil {
		t.Fatal(err)
	}
	if err := b.AddAddr("eth0", "198.18.0.2/24"); err != nil {
		t.Fatal(err)
	}
	for _, e := range []netlab.Endpoint{v1.A, v1.B, v2.A, v2.B} {
		if err := e.Host.WaitOperUp(e.Name, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	proc, err := fw.Start(bin, "-in", "in0", "-out", "out0", "-rules", rules)
	if err != nil {
		t.Fatal(err)
	}
	log := func() string { return string(proc.Output()) }
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(log(), "firewall running"); {
		if time.Now().After(deadline) {
			t.Fatalf("firewall did not start:\n%s", log())
		}
		time.Sleep(20 * time.Millisecond)
	}

	for _, p := range []struct {
		from *netlab.Host
		to   string
	}{{a, "198.18.0.2"}, {b, "198.18.0.1"}} {
		if out, err := p.from.Run(ctx, "ping", "-c", "3", "-i", "0.2", "-W", "2", p.to); err != nil {
			t.Fatalf("ping %s through the firewall: %v\n%s\nfirewall:\n%s", p.to, err, out, log())
		}
	}

	// b listens on TCP 80 and 22 and on UDP 53 and 54 (sockets opened in b, used from here).
	var tcp80, tcp22 net.Listener
	var udp53, udp54 net.PacketConn
	if err := b.Do(func() error {
		var errs [4]error
		tcp80, errs[0] = net.Listen("tcp4", "198.18.0.2:80")
		tcp22, errs[1] = net.Listen("tcp4", "198.18.0.2:22")
		udp53, errs[2] = net.ListenPacket("udp4", "198.18.0.2:53")
		udp54, errs[3] = net.ListenPacket("udp4", "198.18.0.2:54")
		return errors.Join(errs[:]...)
	}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []interface{ Close() error }{tcp80, tcp22, udp53, udp54} {
		defer c.Close()
	}
	go func() {
		for {
			c, err := tcp80.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("hello through the firewall\n"))
			c.Close()
		}
	}()
	var udpOut net.PacketConn
	if err := a.Do(func() error {
		var err error
		udpOut, err = net.ListenPacket("udp4", "198.18.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer udpOut.Close()
	dial := func(addr string) (net.Conn, error) {
		var c net.Conn
		err := a.Do(func() error {
			var err error
			c, err = (&net.Dialer{Timeout: 2 * time.Second}).Dial("tcp4", addr)
			return err
		})
		return c, err
	}
	c, err := dial("198.18.0.2:80")
	if err != nil {
		t.Fatalf("TCP to port 80 (allowed): %v\nfirewall:\n%s", err, log())
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got bytes.Buffer
	got.ReadFrom(c)
	c.Close()
	if got.String() != "hello through the firewall\n" {
		t.Fatalf("TCP to port 80 read %q", got.String())
	}
	if c, err := dial("198.18.0.2:22"); err == nil {
		c.Close()
		t.Fatal("TCP to port 22 connected; the rule drops it")
	} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("TCP to port 22: %v, want a timeout (SYNs dropped, no RST)", err)
	}

	const n = 50
	for i := range n {
		for _, port := range []int{53, 54} {
			if _, err := udpOut.WriteTo([]byte("datagram "+strconv.Itoa(i)), &net.UDPAddr{IP: net.IPv4(198, 18, 0, 2), Port: port}); err != nil {
				t.Fatal(err)
			}
		}
	}
	count := func(pc net.PacketConn) int {
		buf := make([]byte, 64)
		k := 0
		for {
			pc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return k
			}
			k++
		}
	}
	if k := count(udp54); k != n {
		t.Errorf("UDP port 54 (allowed): %d of %d datagrams arrived", k, n)
	}
	if k := count(udp53); k != 0 {
		t.Errorf("UDP port 53 (dropped): %d datagrams arrived", k)
	}

	if err := proc.Stop(5 * time.Second); err != nil {
		t.Fatalf("stop the firewall: %v\n%s", err, log())
	}
	if err := proc.Wait(); err != nil {
		t.Fatalf("firewall exit after SIGTERM: %v\n%s", err, log())
	}
	out := log()
	drops := func(reason string) int {
		m := regexp.MustCompile(`reason=` + reason + ` packets=(\d+)`).FindStringSubmatch(out)
		if m == nil {
			return 0
		}
		k, _ := strconv.Atoi(m[1])
		return k
	}
	if k := drops("fw_veth_dns"); k != n {
		t.Errorf("fw_veth_dns drops %d, want %d:\n%s", k, n, out)
	}
	// The SYN and its retransmissions within the 2 s dial timeout: at least the first.
	if k := drops("fw_veth_ssh"); k < 1 {
		t.Errorf("fw_veth_ssh drops %d, want the dropped SYNs:\n%s", k, out)
	}
	t.Logf("firewall log:\n%s", out)
}
