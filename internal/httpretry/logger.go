package httpretry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"time"

	"github.com/tokenward/tokenward/internal/redact"
)

// maxLogValue bounds every string the adapter logs, in bytes.
const maxLogValue = 512

// leveledLogger adapts *slog.Logger to go-retryablehttp's LeveledLogger
// and scrubs what it logs: go-retryablehttp logs request URLs (queries
// included) and errors that repeat them. URLs are cut to
// scheme://host/path, wherever they appear; an error loses the *url.Error
// that quotes the request URL; everything else passes through the redact
// package. Every message starts with prefix, which names the user, and
// carries lib=go-retryablehttp, which names where it comes from.
type leveledLogger struct {
	l      *slog.Logger
	prefix string
}

func (g leveledLogger) Error(msg string, kv ...any) { g.log(slog.LevelError, msg, kv) }
func (g leveledLogger) Info(msg string, kv ...any)  { g.log(slog.LevelInfo, msg, kv) }
func (g leveledLogger) Debug(msg string, kv ...any) { g.log(slog.LevelDebug, msg, kv) }
func (g leveledLogger) Warn(msg string, kv ...any)  { g.log(slog.LevelWarn, msg, kv) }

func (g leveledLogger) log(level slog.Level, msg string, kv []any) {
	ctx := context.Background()
	if !g.l.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, len(kv)/2+1)
	for i := 0; i+1 < len(kv); i += 2 {
		key, _ := kv[i].(string)
		if key == "" {
			key = "arg"
		}
		attrs = append(attrs, slog.Attr{Key: redact.Truncate(key, 64), Value: logValue(kv[i+1])})
	}
	attrs = append(attrs, slog.String("lib", "go-retryablehttp"))
	g.l.LogAttrs(ctx, level, g.prefix+scrub(msg), attrs...)
}

// logValue renders one value go-retryablehttp logs, without its secrets.
func logValue(v any) slog.Value {
	switch x := v.(type) {
	case string:
		return slog.StringValue(scrub(x))
	case error:
		return slog.StringValue(scrub(StripURL(x).Error()))
	case *url.URL:
		return slog.StringValue(redact.URL(x))
	case int:
		return slog.IntValue(x)
	case int64:
		return slog.Int64Value(x)
	case bool:
		return slog.BoolValue(x)
	case time.Duration:
		return slog.DurationValue(x)
	case nil:
		return slog.StringValue("")
	}
	return slog.StringValue(scrub(fmt.Sprint(v)))
}

// urlInText finds URLs inside free text ("GET https://host/p?q=1 (status:
// 503)"), which go-retryablehttp builds around the request URL.
var urlInText = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^\s"'<>]+`)

// scrub removes secrets from free text that may contain URLs: each URL is
// cut to scheme://host/path, then the redact package removes the rest and
// bounds the length.
func scrub(s string) string {
	s = urlInText.ReplaceAllStringFunc(s, redact.URLString)
	return redact.Truncate(s, maxLogValue)
}

// StripURL returns the error inside err's *url.Error, whose message repeats
// the full request URL (query included); an err without one is returned as
// it is. Messages built for logs and errors start from it.
func StripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		return ue.Err
	}
	return err
}
