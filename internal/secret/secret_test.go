package secret

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	const good = "0123456789abcdef-a-long-enough-secret"
	dir := t.TempDir()
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
		want    string // the secret, or a part of the error
		wantErr bool
	}{
		{"plain", good, 0o600, good, false},
		{"trailing newline removed", good + "\n", 0o600, good, false},
		{"trailing CRLF removed", good + "\r\n", 0o400, good, false},
		{"only one newline removed", good + "\n\n", 0o600, good + "\n", false},
		{"group readable", good, 0o640, "chmod 600", true},
		{"world readable", good, 0o604, "chmod 600", true},
		{"group writable", good, 0o620, "chmod 600", true},
		{"too short", "short secret", 0o600, "at least 16", true},
		{"empty", "", 0o600, "at least 16", true},
		{"too long", strings.Repeat("x", MaxLen+1), 0o600, "longer than", true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, string(rune('a'+i)))
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatal(err)
			}
			got, err := Read(path)
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("err = %v, want one containing %q", err, tt.want)
				}
				if tt.content != "" && strings.Contains(err.Error(), tt.content[:10]) {
					t.Errorf("the error shows the secret: %v", err)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("Read = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	if _, err := Read(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
	if _, err := Read(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file accepted")
	}
}

func TestBytesNeverFormatted(t *testing.T) {
	b := Bytes("0123456789abcdef-a-long-enough-secret")
	cfg := struct{ Secret Bytes }{b}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q", "%X", "%d"} {
		if got := fmt.Sprintf(verb, cfg); strings.Contains(got, "0123") || strings.Contains(got, "3031") {
			t.Errorf("%s shows the secret: %s", verb, got)
		}
	}
}
