// Package uitest drives the outbox console (outbox ui, outbox relay
// --ui-addr) in headless Chromium against a real PostgreSQL and NATS, as
// an operator uses it. It is a module of its own so that the browser
// driver (chromedp) stays out of the outbox binary's module.
//
// The tests need a chromium binary (OUTBOX_TEST_CHROMIUM, else chromium on
// PATH; scripts/services start chromium installs Debian's). Without one
// they skip, unless OUTBOX_TEST_REQUIRE names chromium. With
// OUTBOX_CONSOLE_SCREENSHOTS=dir they save a screenshot of each page into
// dir (docs/console holds the committed ones).
package uitest
