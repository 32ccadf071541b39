module github.com/txoutbox/txoutbox/conformance

go 1.26
