package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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
	testFirewallVeth(t, vethFamily{
		a: "198.18.0.1", b: "198.18.0.2", plen: "/24", net: "4",
		rules: "drop udp to any port 53 reason fw_veth_dns\ndrop tcp to 198.18.0.2 port 22 reason fw_veth_ssh\n",
		dns:   "fw_veth_dns", ssh: "fw_veth_ssh",
	})
}

// TestFirewallBinaryVethIPv6 is TestFirewallBinaryVeth over IPv6 (2001:2::/64, RFC 5180), with the hosts'
// IPv6 at its defaults (router solicitations, MLD and NDP cross the firewall too). The rules name IPv6
// prefixes and an ICMPv6 type: a's echo requests to b are dropped while the neighbour solicitations that
// TCP and UDP need pass, and b's echo requests to a (and a's replies) cross.
func TestFirewallBinaryVethIPv6(t *testing.T) {
	testFirewallVeth(t, vethFamily{
		a: "2001:2::1", b: "2001:2::2", plen: "/64", net: "6",
		rules: "drop udp to 2001:2::2 port 53 reason fw_veth6_dns\n" +
			"drop tcp from 2001:2::/64 to 2001:2::2 port 22 reason fw_veth6_ssh\n" +
			"drop icmpv6 type echo-request from 2001:2::1 reason fw_veth6_echo\n",
		dns: "fw_veth6_dns", ssh: "fw_veth6_ssh", echo: "fw_veth6_echo",
	})
}

// vethFamily is what TestFirewallBinaryVeth* vary: the hosts' addresses, the rules and their reasons.
type vethFamily struct {
	a, b, plen string
	net        string // "4" or "6", for tcp4/udp4 or tcp6/udp6
	rules      string
	dns, ssh   string
	// echo, when set, is the reason of a rule that drops a's echo requests to b.
	echo string
}

func testFirewallVeth(t *testing.T, fam vethFamily) {
	netlab.RequireTool(t, "ping")
	lab := netlab.NewT(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "firewall")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	rules := filepath.Join(dir, "rules")
	if err := os.WriteFile(rules, []byte(fam.rules), 0o644); err != nil {
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
		// For the IPv4 test, IPv6 off: nothing but the test's own traffic crosses.
		if fam.net == "4" {
			if err := e.Host.Sysctl("net.ipv6.conf."+e.Name+".disable_ipv6", "1"); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.Host.SetUp(e.Name); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.AddAddr("eth0", fam.a+fam.plen); err != nil {
		t.Fatal(err)
	}
	if err := b.AddAddr("eth0", fam.b+fam.plen); err != nil {
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

	ping := func(from *netlab.Host, to string) error {
		out, err := from.Run(ctx, "ping", "-"+fam.net, "-c", "3", "-i", "0.2", "-W", "2", to)
		if err != nil {
			return fmt.Errorf("%w\n%s", err, out)
		}
		return nil
	}
	if err := ping(b, fam.a); err != nil {
		t.Fatalf("ping %s through the firewall: %v\nfirewall:\n%s", fam.a, err, log())
	}
	if err := ping(a, fam.b); fam.echo == "" && err != nil {
		t.Fatalf("ping %s through the firewall: %v\nfirewall:\n%s", fam.b, err, log())
	} else if fam.echo != "" && err == nil {
		t.Fatalf("ping %s through the firewall got replies; the rule drops a's echo requests", fam.b)
	}

	// b listens on TCP 80 and 22 and on UDP 53 and 54 (sockets opened in b, used from here).
	var tcp80, tcp22 net.Listener
	var udp53, udp54 net.PacketConn
	if err := b.Do(func() error {
		var errs [4]error
		tcp80, errs[0] = net.Listen("tcp"+fam.net, net.JoinHostPort(fam.b, "80"))
		tcp22, errs[1] = net.Listen("tcp"+fam.net, net.JoinHostPort(fam.b, "22"))
		udp53, errs[2] = net.ListenPacket("udp"+fam.net, net.JoinHostPort(fam.b, "53"))
		udp54, errs[3] = net.ListenPacket("udp"+fam.net, net.JoinHostPort(fam.b, "54"))
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
		udpOut, err = net.ListenPacket("udp"+fam.net, net.JoinHostPort(fam.a, "0"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer udpOut.Close()
	dial := func(addr string) (net.Conn, error) {
		var c net.Conn
		err := a.Do(func() error {
			var err error
			c, err = (&net.Dialer{Timeout: 2 * time.Second}).Dial("tcp"+fam.net, addr)
			return err
		})
		return c, err
	}
	c, err := dial(net.JoinHostPort(fam.b, "80"))
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
	if c, err := dial(net.JoinHostPort(fam.b, "22")); err == nil {
		c.Close()
		t.Fatal("TCP to port 22 connected; the rule drops it")
	} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("TCP to port 22: %v, want a timeout (SYNs dropped, no RST)", err)
	}

	const n = 50
	for i := range n {
		for _, port := range []int{53, 54} {
			if _, err := udpOut.WriteTo([]byte("datagram "+strconv.Itoa(i)), &net.UDPAddr{IP: net.ParseIP(fam.b), Port: port}); err != nil {
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
	if k := drops(fam.dns); k != n {
		t.Errorf("%s drops %d, want %d:\n%s", fam.dns, k, n, out)
	}
	// The SYN and its retransmissions within the 2 s dial timeout: at least the first.
	if k := drops(fam.ssh); k < 1 {
		t.Errorf("%s drops %d, want the dropped SYNs:\n%s", fam.ssh, k, out)
	}
	if k := drops(fam.echo); fam.echo != "" && k != 3 {
		t.Errorf("%s drops %d, want the 3 echo requests:\n%s", fam.echo, k, out)
	}
	t.Logf("firewall log:\n%s", out)
}
