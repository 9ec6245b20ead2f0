package main

import (
	"fmt"
	"html"
	"strings"
)

var implColors = map[string]string{"xdpnet": "#1f77b4", "asavie": "#ff7f0e", "kernel": "#2ca02c", "dpdk": "#9467bd"}

// chart draws a grouped bar chart (one group per scenario and frame size, one bar per implementation, median
// Mpps) as SVG. tcp and tcpfwd (Gbit/s) and rtt (microseconds) are left out: one axis, one unit.
func chart(rep *Report) string {
	type group struct {
		name string
		rs   []*Result
	}
	var groups []group
	maxv := 0.0
	for _, r := range rep.Results {
		if !ppsScenario(r.Scenario) {
			continue // Gbit/s or microseconds, not Mpps: in the tables only
		}
		name := r.Scenario
		if r.Param != "" {
			name += " " + r.Param
		}
		if len(groups) == 0 || groups[len(groups)-1].name != name {
			groups = append(groups, group{name: name})
		}
		g := &groups[len(groups)-1]
		g.rs = append(g.rs, r)
		maxv = max(maxv, r.MedianPPS/1e6)
	}
	if maxv == 0 {
		maxv = 1
	}
	const barW, gap, left, top, plotH = 44, 36, 70, 50, 300
	width := left + 20
	for _, g := range groups {
		width += len(g.rs)*barW + gap
	}
	height := top + plotH + 90
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	m := rep.Machine
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="14">xdpnet bench: median Mpps (%d runs) on %s, %d cores, Linux %s</text>`+"\n",
		left, rep.Runs, html.EscapeString(m.CPU), m.Cores, html.EscapeString(m.Kernel))
	// Y axis with 5 ticks.
	for i := 0; i <= 5; i++ {
		v := maxv * float64(i) / 5
		y := top + plotH - int(float64(plotH)*float64(i)/5)
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#ddd"/><text x="%d" y="%d" text-anchor="end">%.2f</text>`+"\n",
			left, y, width-10, y, left-6, y+4, v)
	}
	fmt.Fprintf(&b, `<text x="16" y="%d" transform="rotate(-90 16 %d)">Mpps</text>`+"\n", top+plotH/2, top+plotH/2)
	x := left + gap/2
	for _, g := range groups {
		gx := x
		for _, r := range g.rs {
			v := r.MedianPPS / 1e6
			h := int(float64(plotH) * v / maxv)
			col := implColors[r.Impl]
			if col == "" {
				col = "#7f7f7f"
			}
			label := fmt.Sprintf("%.2f", v)
			if len(r.Runs) == 0 {
				label = "n/a"
			}
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s"><title>%s %s %s Mpps</title></rect>`+"\n",
				x, top+plotH-h, barW-4, h, col, g.name, r.Impl, label)
			fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" font-size="10">%s</text>`+"\n", x+(barW-4)/2, top+plotH-h-4, label)
			fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end" font-size="10" transform="rotate(-45 %d %d)">%s</text>`+"\n",
				x+(barW-4)/2, top+plotH+14, x+(barW-4)/2, top+plotH+14, r.Impl)
			x += barW
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" font-weight="bold">%s</text>`+"\n", (gx+x)/2, top+plotH+70, g.name)
		x += gap
	}
	b.WriteString("</svg>\n")
	return b.String()
}
