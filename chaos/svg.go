package chaos

import (
	"fmt"
	"html"
	"os"
	"sort"
	"strings"
)

// writeTimelineSVG draws the failover run: ok writes per 100 ms (bars, all
// shards), the slowest ok write of each 100 ms (line, right axis), and a
// vertical mark for every fault (red) and repair (green).
func writeTimelineSVG(path string, ws []write, events []Event, res *FailoverResult) error {
	const bucket = int64(100e6)
	var end int64
	for _, w := range ws {
		end = max(end, w.Complete)
	}
	nb := int(end/bucket) + 1
	counts := make([]int, nb)
	lat := make([]float64, nb) // ms, max per bucket
	for _, w := range ws {
		if !w.OK {
			continue
		}
		b := int(w.Complete / bucket)
		counts[b]++
		lat[b] = max(lat[b], float64(w.Complete-w.Invoke)/1e6)
	}
	maxCount, maxLat := 1, 1.0
	for i := range counts {
		maxCount = max(maxCount, counts[i])
		maxLat = max(maxLat, lat[i])
	}
	sortedLat := append([]float64(nil), lat...)
	sort.Float64s(sortedLat)
	// Clip the latency axis at the 99th percentile bucket ×2 so one
	// multi-second write does not flatten the rest.
	if p := sortedLat[len(sortedLat)*99/100] * 2; p > 1 && p < maxLat {
		maxLat = p
	}

	const (
		left, right, top, bottom = 60.0, 60.0, 40.0, 50.0
		plotH                    = 300.0
	)
	plotW := max(800.0, float64(nb)*2)
	W, H := left+plotW+right, top+plotH+bottom
	x := func(t int64) float64 { return left + float64(t)/float64(int64(nb)*bucket)*plotW }
	yc := func(c int) float64 { return top + plotH - float64(c)/float64(maxCount)*plotH }
	yl := func(l float64) float64 { return top + plotH - min(l, maxLat)/maxLat*plotH }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="11">`+"\n", W, H)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="18" font-size="13">%s</text>`+"\n", left, html.EscapeString(fmt.Sprintf(
		"raftkv failover (%s): ok writes per 100 ms (bars), slowest write per 100 ms (line); red = fault, green = repair. Median unavailable %.0f ms",
		res.Fault, res.MedianUnavailMs)))
	// Axes.
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="black"/>`+"\n", left, top+plotH, left+plotW, top+plotH)
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="black"/>`+"\n", left, top, left, top+plotH)
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="black"/>`+"\n", left+plotW, top, left+plotW, top+plotH)
	for i := 0; i <= 4; i++ {
		c := maxCount * i / 4
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="end">%d</text>`+"\n", left-4, yc(c)+4, c)
		l := maxLat * float64(i) / 4
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" fill="#c60">%.0f ms</text>`+"\n", left+plotW+4, yl(l)+4, l)
	}
	step := int64(5e9)
	for t := int64(0); t <= int64(nb)*bucket; t += step {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle">%ds</text>`+"\n", x(t), top+plotH+14, t/1e9)
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f">time since start</text>`+"\n", left+plotW/2-40, H-10)
	// Bars.
	bw := plotW / float64(nb)
	for i, c := range counts {
		if c > 0 {
			fmt.Fprintf(&b, `<rect x="%.2f" y="%.2f" width="%.2f" height="%.2f" fill="#4a7ebb"/>`+"\n",
				x(int64(i)*bucket), yc(c), max(bw-0.3, 0.5), top+plotH-yc(c))
		}
	}
	// Latency line.
	var pts []string
	for i, l := range lat {
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(int64(i)*bucket+bucket/2), yl(l)))
	}
	fmt.Fprintf(&b, `<polyline fill="none" stroke="#c60" stroke-width="1" points="%s"/>`+"\n", strings.Join(pts, " "))
	// Marks.
	for _, e := range events {
		color := "#d00"
		if e.Action == "stop" {
			color = "#080"
		} else if e.Action != "start" {
			continue
		}
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="%s" stroke-width="1.5"><title>%s</title></line>`+"\n",
			x(e.At), top, x(e.At), top+plotH, color, html.EscapeString(e.Detail))
	}
	b.WriteString("</svg>\n")
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
