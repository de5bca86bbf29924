package httpapi

import (
	"net/http"
	"strconv"
	"unicode/utf8"
)

// appendJSONString appends s to b as a JSON string. It is for the answer
// every write sends (writePutAnswer), where encoding/json's reflection and
// encoder allocation were a noticeable share of a node's CPU under load.
// Invalid UTF-8 becomes U+FFFD, as encoding/json does; keys are valid UTF-8
// before they get here anyway. <, > and & are escaped like encoding/json's
// default, so an answer read as HTML cannot open a tag.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			// Valid JSON, but they end a line in JavaScript.
			b = append(b, s[start:i]...)
			b = append(b, `\u202`...)
			b = append(b, hex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// writePutAnswer writes the 200 answer of a put: what writeJSON would
// write for p, built by hand.
func writePutAnswer(w http.ResponseWriter, p putResponse) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	b := make([]byte, 0, 64+len(p.Key)+len(p.Shard))
	b = append(b, `{"key":`...)
	b = appendJSONString(b, p.Key)
	b = append(b, `,"revision":`...)
	b = strconv.AppendUint(b, p.Revision, 10)
	b = append(b, `,"version":`...)
	b = strconv.AppendUint(b, p.Version, 10)
	b = append(b, `,"shard":`...)
	b = appendJSONString(b, p.Shard)
	b = append(b, "}\n"...)
	_, _ = w.Write(b)
}
