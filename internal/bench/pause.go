package bench

import (
	"sync"
	"time"
)

// pauseFloor is the shortest gap the pause monitor records, pauseTick how
// often it wakes up.
const (
	pauseFloor = 20 * time.Millisecond
	pauseTick  = 5 * time.Millisecond
)

// span is a time interval [from, to).
type span struct{ from, to time.Time }

// pauseMonitor is a bystander goroutine that wakes up every pauseTick and
// records each gap longer than pauseFloor between two wake-ups: a time in
// which this process did not run at all (the host was busy with other work,
// the VM was descheduled). On a shared machine such pauses also delay
// requests, and they have nothing to do with the client under test, so the
// stall table reports them next to the slow requests.
type pauseMonitor struct {
	stop chan struct{}
	done chan struct{}

	mu     sync.Mutex // guards pauses
	pauses []span
}

func startPauseMonitor() *pauseMonitor {
	m := &pauseMonitor{stop: make(chan struct{}), done: make(chan struct{})}
	go m.run()
	return m
}

func (m *pauseMonitor) run() {
	defer close(m.done)
	t := time.NewTicker(pauseTick)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		now := time.Now()
		if now.Sub(last) > pauseFloor {
			// The tick that was due after last is when the pause started.
			m.mu.Lock()
			m.pauses = append(m.pauses, span{last.Add(pauseTick), now})
			m.mu.Unlock()
		}
		last = now
	}
}

// finish stops the monitor and returns the pauses it saw.
func (m *pauseMonitor) finish() []span {
	close(m.stop)
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.pauses
}

// overlap returns how much of s falls into spans, which are sorted and
// disjoint.
func overlap(s span, spans []span) time.Duration {
	var d time.Duration
	for _, p := range spans {
		if !p.to.After(s.from) {
			continue
		}
		if !p.from.Before(s.to) {
			break
		}
		from, to := p.from, p.to
		if from.Before(s.from) {
			from = s.from
		}
		if to.After(s.to) {
			to = s.to
		}
		d += to.Sub(from)
	}
	return d
}
