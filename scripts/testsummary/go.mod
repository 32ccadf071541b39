module github.com/txoutbox/txoutbox/scripts/testsummary

go 1.26.0
