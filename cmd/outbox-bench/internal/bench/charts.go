package bench

import (
	"fmt"
	"html"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// Chart files WriteCharts writes.
const (
	DrainChart   = "drain.svg"
	LatencyChart = "latency.svg"
)

// WriteCharts draws the drain throughput per pair and relay count, and the
// latency percentiles per pair and rate, as SVG files in dir. It returns
// the names of the files written (none for a report without the numbers).
func WriteCharts(r *Report, dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var written []string
	for name, svg := range map[string]string{DrainChart: drainSVG(r), LatencyChart: latencySVG(r)} {
		if svg == "" {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(svg), 0o644); err != nil {
			return written, err
		}
		written = append(written, name)
	}
	return written, nil
}

// Chart geometry, in SVG user units.
const (
	chartWidth = 860
	labelWidth = 190
	barHeight  = 16
	rowGap     = 6
	groupGap   = 18
	chartTop   = 46
)

// svgDoc accumulates one chart.
type svgDoc struct {
	grid strings.Builder // drawn first, under the bars
	b    strings.Builder
	y    float64
}

func (d *svgDoc) printf(format string, args ...any) { fmt.Fprintf(&d.b, format, args...) }

func (d *svgDoc) text(x, y float64, anchor, class, s string) {
	d.printf(`<text x="%.1f" y="%.1f" text-anchor="%s" class="%s">%s</text>`+"\n", x, y, anchor, class, html.EscapeString(s))
}

func (d *svgDoc) finish(title, subtitle string) string {
	height := d.y + 30
	var out strings.Builder
	fmt.Fprintf(&out, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%.0f" viewBox="0 0 %d %.0f" font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif" font-size="12">`+"\n",
		chartWidth, height, chartWidth, height)
	out.WriteString(`<style>
.title { font-size: 15px; font-weight: 600; fill: #1f2328; }
.sub { fill: #59636e; }
.group { font-weight: 600; fill: #1f2328; }
.label { fill: #1f2328; }
.value { fill: #1f2328; font-variant-numeric: tabular-nums; }
.axis { fill: #59636e; font-size: 11px; }
.grid { stroke: #d1d9e0; stroke-width: 1; }
</style>
<rect width="100%" height="100%" fill="#ffffff"/>
`)
	fmt.Fprintf(&out, `<text x="12" y="20" class="title">%s</text>`+"\n", html.EscapeString(title))
	fmt.Fprintf(&out, `<text x="12" y="36" class="sub">%s</text>`+"\n", html.EscapeString(subtitle))
	out.WriteString(d.grid.String())
	out.WriteString(d.b.String())
	out.WriteString("</svg>\n")
	return out.String()
}

// Colours: the simple relay in grey, txoutbox in blues; latency
// percentiles from dark to light.
var (
	simpleColour   = "#8c959f"
	tailColour     = "#1a7f37"
	relayColours   = []string{"#0969da", "#3b8eea", "#74b3f2", "#a9d1f7"}
	latencyColours = [3]string{"#0a3069", "#218bff", "#a5d6ff"}
)

func drainSVG(r *Report) string {
	top := 0.0
	for _, p := range r.Pairs {
		if p.Simple != nil {
			top = math.Max(top, p.Simple.Max)
		}
		for _, d := range p.Drain {
			if d.PerSec.Valid() {
				top = math.Max(top, d.PerSec.Max)
			}
		}
		if d := p.TailDrain; d != nil && d.PerSec.Valid() {
			top = math.Max(top, d.PerSec.Max)
		}
	}
	if top == 0 {
		return ""
	}
	top = niceCeil(top)
	produce := map[string]*Measure{}
	for _, b := range r.Brokers {
		produce[b.Spec] = b.Produce
	}
	plotX, plotW := float64(labelWidth), float64(chartWidth-labelWidth-90)
	x := func(v float64) float64 { return plotX + plotW*v/top }
	d := &svgDoc{y: chartTop}
	for _, p := range r.Pairs {
		type bar struct {
			label  string
			m      *Measure
			colour string
		}
		var bars []bar
		if p.Simple != nil {
			bars = append(bars, bar{"simple relay", p.Simple, simpleColour})
		}
		for i, dr := range p.Drain {
			if dr.PerSec.Valid() {
				bars = append(bars, bar{plural(dr.Relays, "txoutbox relay"), &dr.PerSec, relayColours[min(i, len(relayColours)-1)]})
			}
		}
		if dr := p.TailDrain; dr != nil && dr.PerSec.Valid() {
			bars = append(bars, bar{"1 relay tailing the WAL", &dr.PerSec, tailColour})
		}
		if len(bars) == 0 {
			continue
		}
		d.y += 14
		group := pairName(r, p)
		if m := produce[p.Broker]; m.Valid() {
			group += fmt.Sprintf("  (the broker's own producer: %s msg/s, off the scale)", number(m.Median))
		}
		d.text(12, d.y, "start", "group", group)
		d.y += 8
		for _, b := range bars {
			d.text(plotX-8, d.y+barHeight-4, "end", "label", b.label)
			d.printf(`<rect x="%.1f" y="%.1f" width="%.1f" height="%d" fill="%s" rx="2"/>`+"\n", plotX, d.y, x(b.m.Median)-plotX, barHeight, b.colour)
			if len(b.m.Runs) > 1 { // the rounds' range
				mid := d.y + barHeight/2
				d.printf(`<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#1f2328" stroke-width="1"/>`+"\n", x(b.m.Min), x(b.m.Max), mid, mid)
			}
			d.text(x(b.m.Max)+6, d.y+barHeight-4, "start", "value", number(b.m.Median))
			d.y += barHeight + rowGap
		}
		d.y += groupGap - rowGap
	}
	d.axis(x, linearTicks(top), number)
	sub := fmt.Sprintf("events/s, %s records of %d bytes over %s keys, median of %d rounds (line: min–max); higher is better",
		number(float64(r.Settings.Backlog)), r.Settings.PayloadBytes, number(float64(r.Settings.Keys)), r.Settings.Rounds)
	return d.finish("Drain throughput per store × broker and relay count", sub)
}

func latencySVG(r *Report) string {
	lo, hi := math.Inf(1), 0.0
	for _, p := range r.Pairs {
		for _, l := range p.Latency {
			if l.Samples > 0 {
				lo = math.Min(lo, l.P50)
				hi = math.Max(hi, l.P999)
			}
		}
	}
	if hi == 0 {
		return ""
	}
	lo = math.Pow(10, math.Floor(math.Log10(math.Max(lo, 0.01))))
	hi = math.Pow(10, math.Ceil(math.Log10(math.Max(hi, lo*10))))
	plotX, plotW := float64(labelWidth), float64(chartWidth-labelWidth-150)
	x := func(v float64) float64 {
		v = math.Max(v, lo)
		return plotX + plotW*(math.Log10(v)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))
	}
	d := &svgDoc{y: chartTop + 16}
	// Legend.
	for i, name := range []string{"p50", "p99", "p99.9"} {
		lx := plotX + float64(i)*70
		d.printf(`<rect x="%.1f" y="%.1f" width="12" height="12" fill="%s"/>`+"\n", lx, d.y-10, latencyColours[i])
		d.text(lx+16, d.y, "start", "label", name)
	}
	d.y += 6
	for _, p := range r.Pairs {
		if len(p.Latency) == 0 {
			continue
		}
		d.y += 14
		d.text(12, d.y, "start", "group", pairName(r, p))
		d.y += 8
		for _, l := range p.Latency {
			if l.Samples == 0 {
				continue
			}
			label := fmt.Sprintf("%s ev/s, %s", number(float64(l.Rate)), l.Relay)
			d.text(plotX-8, d.y+barHeight-4, "end", "label", label)
			// Widest first, so the narrower percentiles are drawn over it.
			for i, v := range []float64{l.P999, l.P99, l.P50} {
				d.printf(`<rect x="%.1f" y="%.1f" width="%.1f" height="%d" fill="%s"/>`+"\n", plotX, d.y, x(v)-plotX, barHeight, latencyColours[2-i])
			}
			d.text(x(l.P999)+6, d.y+barHeight-4, "start", "value",
				fmt.Sprintf("%s / %s / %s ms", msText(l.P50), msText(l.P99), msText(l.P999)))
			d.y += barHeight + rowGap
		}
		d.y += groupGap - rowGap
	}
	var ticks []float64
	for v := lo; v <= hi*1.0001; v *= 10 {
		ticks = append(ticks, v)
	}
	d.axis(x, ticks, func(v float64) string { return fmt.Sprintf("%g ms", v) })
	sub := fmt.Sprintf("commit → broker ack, one event per business transaction, %v s per rate; log scale; shorter is better", r.Settings.LatencySeconds)
	return d.finish("Latency percentiles per store × broker and rate", sub)
}

// axis draws grid lines (under the bars) and tick labels below them.
func (d *svgDoc) axis(x func(float64) float64, ticks []float64, format func(float64) string) {
	bottom := d.y
	for _, t := range ticks {
		tx := x(t)
		fmt.Fprintf(&d.grid, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%.1f" class="grid"/>`+"\n", tx, tx, chartTop, bottom)
		d.text(tx, bottom+14, "middle", "axis", format(t))
	}
	d.y = bottom + 14
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func linearTicks(top float64) []float64 {
	step := niceCeil(top / 5)
	var ticks []float64
	for v := 0.0; v <= top*1.0001; v += step {
		ticks = append(ticks, v)
	}
	return ticks
}
