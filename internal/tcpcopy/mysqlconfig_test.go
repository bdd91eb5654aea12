package tcpcopy

import (
	"strings"
	"testing"
)

func TestParseProtocol(t *testing.T) {
	tests := []struct {
		in    string
		on    bool
		ports []uint16
		err   string
	}{
		{"", false, nil, ""},
		{"tcp", false, nil, ""},
		{"mysql", true, nil, ""},
		{"mysql:3306,3307", true, []uint16{3306, 3307}, ""},
		{"postgres", false, nil, "known protocols"},
		{"mysql:", false, nil, "list the online ports"},
		{"mysql:99999", false, nil, "99999"},
	}
	for _, tt := range tests {
		on, ports, err := ParseProtocol(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: err %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || on != tt.on || len(ports) != len(tt.ports) {
			t.Errorf("%q: %v %v %v", tt.in, on, ports, err)
		}
	}
}

func TestValidateMySQL(t *testing.T) {
	base := func() Config {
		c := Default()
		ms, _ := ParseMappings("192.0.2.1:3306-198.51.100.2:3306", false)
		c.Mappings = ms
		is, _ := ParseIntercepts("198.51.100.130", c.InterceptPort)
		c.Intercepts = is
		return c
	}
	tests := []struct {
		name string
		set  func(*Config)
		err  string
	}{
		{"on", func(c *Config) { c.MySQL = MySQLConfig{On: true, UsersFile: "/x"} }, ""},
		{"no users file", func(c *Config) { c.MySQL = MySQLConfig{On: true} }, "--mysql-users FILE is required"},
		{"users without protocol", func(c *Config) { c.MySQL.UsersFile = "/x" }, "only with --protocol mysql"},
		{"read-only without protocol", func(c *Config) { c.MySQL.ReadOnly = true }, "only with --protocol mysql"},
		{"db without user", func(c *Config) { c.MySQL = MySQLConfig{On: true, UsersFile: "/x", DefaultDB: "d"} }, "only with --mysql-default-user"},
		{"version 6", func(c *Config) { c.MySQL = MySQLConfig{On: true, UsersFile: "/x"}; c.WireVersion = 6 }, "version 7"},
		{"unknown port", func(c *Config) { c.MySQL = MySQLConfig{On: true, UsersFile: "/x", Ports: []uint16{3307}} }, "no -x mapping"},
	}
	for _, tt := range tests {
		c := base()
		tt.set(&c)
		err := c.Validate()
		if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.err)
		}
	}
	c := base()
	c.MySQL = MySQLConfig{On: true, UsersFile: "/x"}
	c.CompareBytes = 0
	if !c.wantOnline() || c.linkWindow() != mysqlWindow || !c.mysqlTargets()[c.Mappings[0].Target] {
		t.Error("the module needs the online answers, a response window and its targets")
	}
}
