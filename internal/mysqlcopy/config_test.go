package mysqlcopy

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadUsers(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	u, err := LoadUsers(write("ok", "# users\napp:s3cr:et\n\nreader:\n", 0o600))
	if err != nil || len(u) != 2 || u["app"] != "s3cr:et" || u["reader"] != "" {
		t.Fatalf("got %v %v", u, err)
	}
	for _, tt := range []struct {
		name, body string
		mode       os.FileMode
		want       string
	}{
		{"world", "app:pw\n", 0o644, "chmod 600"},
		{"group", "app:pw\n", 0o640, "chmod 600"},
		{"nocolon", "app\n", 0o600, "want user:password"},
		{"dup", "a:1\na:2\n", 0o600, "listed twice"},
		{"empty-user", ":pw\n", 0o600, "empty user"},
	} {
		_, err := LoadUsers(write(tt.name, tt.body, tt.mode))
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "pw") && tt.name != "dup" && tt.name != "nocolon" && tt.name != "empty-user" && !strings.Contains(err.Error(), dir) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}

// Passwords never show in formatted or logged output.
func TestPasswordHidden(t *testing.T) {
	u := Users{"app": "s3cret"}
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("users", "users", u, "pw", u["app"])
	out := b.String() + fmt.Sprint(u) + fmt.Sprintf("%v %+v %#v %s", u, u, u, u["app"])
	if strings.Contains(out, "s3cret") {
		t.Errorf("password shown: %s", out)
	}
}
