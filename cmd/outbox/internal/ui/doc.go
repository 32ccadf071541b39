// Package ui is the operator's console of outbox: server-rendered pages
// that answer the questions asked under pressure. Is the relay keeping up
// (the overview: pending, lag, delivered per second, dead letters, relays
// and lanes, warnings)? Where is this event (found by ID or key, with its
// state and what waits behind it)? What died and why (the dead letters,
// replayed or purged after a confirmation that says what replay holds
// back)?
//
// `outbox ui` serves it on its own, and `outbox relay --ui-addr` beside a
// relay, which then also feeds it the relay's deliveries. The pages need no
// JavaScript; one small embedded script redraws the overview's numbers
// and charts from a JSON endpoint. Nothing is loaded from the internet.
//
// The statistics come from one sampler per process, so the database sees
// one [outbox.StatsReader.Stats] call per sample interval however many
// browsers watch, and one every 30 seconds when nobody does.
package ui
