module github.com/txoutbox/txoutbox/core

go 1.26
