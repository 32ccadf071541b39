package outbox

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"sync"
	"time"
)

// NewID returns a new UUIDv7 (RFC 9562) in its canonical lowercase text form.
//
// IDs from one process sort in the order they were made: the 48-bit
// millisecond timestamp is followed by a 12-bit counter that increases
// within a millisecond (method 1 of RFC 9562, section 6.2), then 62 random
// bits. The ID is the deduplication key downstream (Kafka header, NATS
// Nats-Msg-Id); it does not define the delivery order, which the store's
// sequence does.
func NewID() string {
	var u [16]byte
	ms, seq := idClock.next()
	binary.BigEndian.PutUint64(u[0:8], ms<<16)
	u[6] = 0x70 | byte(seq>>8)&0x0f // version 7 + high 4 bits of the counter
	u[7] = byte(seq)
	if _, err := rand.Read(u[8:]); err != nil {
		panic("outbox: crypto/rand failed: " + err.Error())
	}
	u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant
	return formatUUID(u)
}

// ValidID reports whether id is a UUID in its canonical 8-4-4-4-12 text
// form (either case), as [Message.ID] must be.
func ValidID(id string) bool {
	_, ok := parseUUID(id)
	return ok
}

// IDTime returns the timestamp embedded in a UUIDv7, and false when id is not
// a version 7 UUID.
func IDTime(id string) (time.Time, bool) {
	u, ok := parseUUID(id)
	if !ok || u[6]>>4 != 7 {
		return time.Time{}, false
	}
	ms := binary.BigEndian.Uint64(u[0:8]) >> 16
	return time.UnixMilli(int64(ms)).UTC(), true
}

// idClock hands out (millisecond, counter) pairs that never go backwards in
// this process, even when the wall clock does.
var idClock monotonicClock

type monotonicClock struct {
	mu  sync.Mutex
	ms  uint64
	seq uint16
}

func (c *monotonicClock) next() (uint64, uint16) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := uint64(time.Now().UnixMilli())
	switch {
	case now > c.ms:
		c.ms, c.seq = now, 0
	case c.seq < 0x0fff:
		c.seq++
	default: // counter exhausted within this millisecond: borrow the next one
		c.ms, c.seq = c.ms+1, 0
	}
	return c.ms, c.seq
}

func formatUUID(u [16]byte) string {
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:])
	return string(b[:])
}

// parseUUID accepts the canonical 8-4-4-4-12 form in either case.
func parseUUID(s string) ([16]byte, bool) {
	var u [16]byte
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, false
	}
	j := 0
	for i := 0; i < 36; {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			i++
			continue
		}
		hi, ok1 := fromHex(s[i])
		lo, ok2 := fromHex(s[i+1])
		if !ok1 || !ok2 {
			return u, false
		}
		u[j] = hi<<4 | lo
		j++
		i += 2
	}
	return u, true
}

func fromHex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
