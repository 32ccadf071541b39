package relay

import (
	"context"

	"github.com/txoutbox/txoutbox/cmd/outbox/internal/app"
	outbox "github.com/txoutbox/txoutbox/core"
)

// stopOnRefusal is the relay's Observer, wrapping the metrics observer: a
// read of the relay's lanes or a round of lane leasing that fails in a way
// no retry can cure (the store refuses the credentials or a privilege, the
// database or the outbox tables do not exist, see app.NeedsFix) stops the
// relay with that error, where the core relay would pause and retry
// forever. A store that does not answer is still waited for.
type stopOnRefusal struct {
	outbox.Observer
	stop context.CancelCauseFunc
}

func (o stopOnRefusal) ObserveRead(e outbox.ReadEvent) {
	o.Observer.ObserveRead(e)
	o.check(e.Err)
}

func (o stopOnRefusal) ObserveLanes(e outbox.LaneEvent) {
	o.Observer.ObserveLanes(e)
	o.check(e.Err)
}

func (o stopOnRefusal) check(err error) {
	if err != nil && app.NeedsFix(err) {
		o.stop(err)
	}
}
