package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"testing"
)

// A put's answer is read by every client: whatever the key holds, it must
// decode to the same key, as encoding/json's answer did.
func TestPutAnswerDecodesToWhatEncodingJSONWrites(t *testing.T) {
	for _, key := range []string{
		"bench/00001234",
		"",
		`quote " backslash \ slash /`,
		"tab\tnewline\nreturn\rbell\afeed\fnul\x00esc\x1b",
		"<script>&amp;</script>",
		"línea 2 \u2028 párrafo \u2029 end",
		"emoji 🗝️ and 漢字",
		"bad utf-8 \xff\xfe here \xc3",
	} {
		p := putResponse{Key: key, Revision: 18446744073709551615, Version: 7, Shard: "shard-3"}
		rec := httptest.NewRecorder()
		writePutAnswer(rec, p)
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" || rec.Code != 200 {
			t.Fatalf("key %q: status %d, Content-Type %q", key, rec.Code, ct)
		}
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(p); err != nil {
			t.Fatal(err)
		}
		var got, exp putResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
			t.Fatalf("key %q: answer %q is not JSON: %v", key, rec.Body.String(), err)
		}
		if err := json.Unmarshal(want.Bytes(), &exp); err != nil {
			t.Fatal(err)
		}
		if got != exp {
			t.Errorf("key %q: answer %q decodes to %+v, encoding/json's %q to %+v", key, rec.Body.String(), got, want.String(), exp)
		}
		if !bytes.HasSuffix(rec.Body.Bytes(), []byte("}\n")) || bytes.ContainsAny(rec.Body.Bytes(), "<>&") {
			t.Errorf("key %q: answer %q: want one line, with no raw <, > or &", key, rec.Body.String())
		}
	}
}

func FuzzAppendJSONString(f *testing.F) {
	f.Add("bench/00000001")
	f.Add("a\"b\\c\x00\x1f<>&\u2028\xff")
	f.Fuzz(func(t *testing.T, s string) {
		b := appendJSONString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%q encodes to %q, which is not a JSON string: %v", s, b, err)
		}
		want, _ := json.Marshal(s)
		var exp string
		_ = json.Unmarshal(want, &exp)
		if got != exp {
			t.Fatalf("%q encodes to %q, decoding to %q; encoding/json's decodes to %q", s, b, got, exp)
		}
	})
}
