package bench

import (
	"fmt"
)

// checkTargets compares a report with the targets of issues 11, 15, 17 and
// 18. Each target
// applies to the pairs or stores it names; those not measured are left out.
// oneRelayDrain is the drain by one relay, if measured.
func oneRelayDrain(p PairReport) *DrainResult {
	for i := range p.Drain {
		if p.Drain[i].Relays == 1 && p.Drain[i].PerSec.Valid() {
			return &p.Drain[i]
		}
	}
	return nil
}

// latencyTarget is the p99 commit → ack limit in milliseconds for a relay
// (RelayTxoutbox: issue 17's; RelayTail: issue 18's) on a store, broker and
// rate, or 0 where none is set.
func latencyTarget(relay, store, broker string, rate int) float64 {
	if relay == RelayTail {
		switch {
		case store == "postgres" && broker == "kafka" && rate == 1000:
			return 5
		case store == "postgres" && broker == "kafka" && rate == 5000:
			return 10
		}
		return 0
	}
	if relay != RelayTxoutbox {
		return 0
	}
	switch {
	case store == "postgres" && broker == "kafka" && rate == 1000:
		return 10
	case store == "postgres" && broker == "kafka" && rate == 5000:
		return 25
	case store == "postgres" && broker == "nats" && rate == 1000:
		return 15
	case store == "mysql" && broker == "kafka" && rate == 1000:
		return 15
	}
	return 0
}

func checkTargets(r *Report) []TargetCheck {
	var out []TargetCheck
	brokerKind := map[string]string{}
	for _, b := range r.Brokers {
		brokerKind[b.Spec] = b.Kind
	}
	storeKind := map[string]string{}
	for _, s := range r.Stores {
		storeKind[s.Spec] = s.Kind
	}
	for _, p := range r.Pairs {
		sk, bk := storeKind[p.Store], brokerKind[p.Broker]
		where := sk + " × " + p.Broker
		one := oneRelayDrain(p)
		if one != nil && one.VsSimple > 0 {
			switch {
			case sk == "postgres" && bk == "kafka":
				out = append(out, TargetCheck{Goal: "1 relay drains ≥ 1.5× the simple relay", Where: where,
					Value: one.VsSimple, Limit: 1.5, Unit: "×", Met: one.VsSimple >= 1.5})
			case sk == "postgres" && bk == "nats":
				out = append(out, TargetCheck{Goal: "1 relay drains ≥ 1.2× the simple relay", Where: where,
					Value: one.VsSimple, Limit: 1.2, Unit: "×", Met: one.VsSimple >= 1.2})
			case sk == "mysql" && bk == "kafka":
				out = append(out, TargetCheck{Goal: "1 relay drains ≥ 1.5× the simple relay", Where: where,
					Value: one.VsSimple, Limit: 1.5, Unit: "×", Met: one.VsSimple >= 1.5})
			case sk == "sqlite":
				out = append(out, TargetCheck{Goal: "1 relay drains ≥ 2× the simple relay", Where: where,
					Value: one.VsSimple, Limit: 2, Unit: "×", Met: one.VsSimple >= 2})
			}
		}
		if sk == "postgres" && bk == "nats" && one != nil && one.VsProduce > 0 {
			out = append(out, TargetCheck{Goal: "1 relay drains ≥ 0.6× raw JetStream PublishAsync", Where: where,
				Value: one.VsProduce, Limit: 0.6, Unit: "×", Met: one.VsProduce >= 0.6})
		}
		if t := p.TailDrain; t != nil && t.VsSimple > 0 && sk == "postgres" && bk == "kafka" {
			out = append(out, TargetCheck{Goal: "1 relay tailing the WAL drains ≥ 3× the simple relay", Where: where,
				Value: t.VsSimple, Limit: 3, Unit: "×", Met: t.VsSimple >= 3})
		}
		if h := p.HotDrain; h != nil && h.VsAllKeys > 0 {
			out = append(out, TargetCheck{Goal: fmt.Sprintf("%d hot keys drain ≥ 0.5× the %s-key drain", r.Settings.HotKeys, number(float64(r.Settings.Keys))),
				Where: where, Value: h.VsAllKeys, Limit: 0.5, Unit: "×", Met: h.VsAllKeys >= 0.5})
		}
		if len(p.Drain) > 1 && p.Drain[0].Relays == 1 && p.Drain[0].PerSec.Valid() {
			worst, worstN := 0.0, 0
			for _, d := range p.Drain[1:] {
				if !d.PerSec.Valid() {
					continue
				}
				if v := ratio(d.PerSec.Median, p.Drain[0].PerSec.Median); worstN == 0 || v < worst {
					worst, worstN = v, d.Relays
				}
			}
			if worstN > 0 {
				out = append(out, TargetCheck{Goal: "2 and 4 relays drain ≥ 1.0× one",
					Where: fmt.Sprintf("%s, slowest: %d relays over 1", where, worstN),
					Value: worst, Limit: 1, Unit: "×", Met: worst >= 1})
			}
		}
		for _, l := range p.Latency {
			if l.Samples == 0 {
				continue
			}
			if limit := latencyTarget(l.Relay, sk, bk, l.Rate); limit > 0 {
				// The writers must reach the offered rate: a latency at a
				// rate the writers could not offer proves nothing.
				reached := l.Achieved >= 0.97*float64(l.Rate)
				how := ""
				if l.Relay == RelayTail {
					how = " tailing the WAL"
				}
				out = append(out, TargetCheck{Goal: fmt.Sprintf("p99 commit → ack ≤ %g ms at %s ev/s%s, writers at the rate", limit, number(float64(l.Rate)), how),
					Where: fmt.Sprintf("%s (%s ev/s achieved)", where, number(l.Achieved)), Value: l.P99, Limit: limit, Unit: "ms", Met: l.P99 <= limit && reached})
			}
		}
	}
	for _, s := range r.Stores {
		if s.Idle != nil {
			out = append(out, TargetCheck{Goal: "an idle relay costs the store a few calls per second (≤ 5)",
				Where: s.Kind, Value: s.Idle.CallsPerSec, Limit: 5, Unit: "/s", Met: s.Idle.CallsPerSec <= 5})
		}
		if s.Enqueue != nil && len(s.Enqueue.Cases) > 1 {
			v := s.Enqueue.Cases[1].Ratio
			out = append(out, TargetCheck{Goal: "enqueue overhead ≤ 1.3× for one message",
				Where: s.Kind, Value: v, Limit: 1.3, Unit: "×", Met: v > 0 && v <= 1.3})
		}
		if s.TailEnqueue != nil && len(s.TailEnqueue.Cases) > 1 && s.Kind == "postgres" {
			v := s.TailEnqueue.Cases[1].Ratio
			out = append(out, TargetCheck{Goal: "enqueue overhead ≤ 1.2× for one message, tailing the WAL",
				Where: s.Kind, Value: v, Limit: 1.2, Unit: "×", Met: v > 0 && v <= 1.2})
		}
		if s.Growth != nil {
			v := s.Growth.ReadRatio
			out = append(out, TargetCheck{Goal: fmt.Sprintf("read with %s retained rows ≤ 1.2× empty", number(float64(s.Growth.Retained))),
				Where: s.Kind, Value: v, Limit: 1.2, Unit: "×", Met: v > 0 && v <= 1.2})
		}
	}
	return out
}
