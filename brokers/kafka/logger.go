package kafkapub

import (
	"context"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kgo"
)

// slogAdapter passes the client's warnings and errors to a slog.Logger.
type slogAdapter struct{ log *slog.Logger }

func (slogAdapter) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (a slogAdapter) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	l := slog.LevelWarn
	switch level {
	case kgo.LogLevelError:
		l = slog.LevelError
	case kgo.LogLevelInfo:
		l = slog.LevelInfo
	case kgo.LogLevelDebug:
		l = slog.LevelDebug
	}
	a.log.Log(context.Background(), l, "kafka client: "+msg, keyvals...)
}
