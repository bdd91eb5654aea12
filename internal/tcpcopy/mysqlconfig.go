package tcpcopy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/cliutil"
	"github.com/tcpcopy-go/tcpcopy/internal/mysqlcopy"
	"github.com/tcpcopy-go/tcpcopy/pkg/wire"
)

// MySQLConfig is the MySQL module's part of the configuration
// (docs/mysql.md).
type MySQLConfig struct {
	// On copies the sessions of Ports as MySQL (--protocol mysql).
	On bool
	// Ports are the online ports of the mappings copied as MySQL
	// (--protocol mysql:PORT[,PORT]); empty: every mapping.
	Ports []uint16
	// UsersFile holds the user:password lines (--mysql-users, required).
	UsersFile string
	// DefaultUser and DefaultDB log in connections joined mid-way without
	// a login learnt for their client address (--mysql-default-user,
	// --mysql-default-db).
	DefaultUser, DefaultDB string
	// ReadOnly copies no statement that changes data (--mysql-read-only).
	ReadOnly bool
}

// ParseProtocol reads the --protocol value: "mysql" (every mapping), or
// "mysql:PORT[,PORT...]" (the mappings with those online ports).
func ParseProtocol(s string) (on bool, ports []uint16, err error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "tcp" {
		return false, nil, nil
	}
	name, list, hasList := strings.Cut(s, ":")
	if name != "mysql" {
		return false, nil, fmt.Errorf("option --protocol: %q: known protocols are tcp (plain copy, the default) and mysql", name)
	}
	if !hasList {
		return true, nil, nil
	}
	for _, item := range cliutil.SplitList(list) {
		p, err := parsePort(item)
		if err != nil {
			return false, nil, fmt.Errorf("option --protocol: %q: %w", item, err)
		}
		ports = append(ports, p)
	}
	if len(ports) == 0 {
		return false, nil, errors.New("option --protocol: mysql: with a colon, list the online ports of the MySQL mappings")
	}
	return true, ports, nil
}

// validateMySQL checks the module's options against the rest.
func (c *Config) validateMySQL() error {
	m := &c.MySQL
	if !m.On {
		switch {
		case m.UsersFile != "":
			return errors.New("option --mysql-users: only with --protocol mysql")
		case m.DefaultUser != "" || m.DefaultDB != "":
			return errors.New("options --mysql-default-user and --mysql-default-db: only with --protocol mysql")
		case m.ReadOnly:
			return errors.New("option --mysql-read-only: only with --protocol mysql")
		}
		return nil
	}
	if m.UsersFile == "" {
		return errors.New("option --protocol mysql: --mysql-users FILE is required (user:password lines, mode 600)")
	}
	if m.DefaultDB != "" && m.DefaultUser == "" {
		return errors.New("option --mysql-default-db: only with --mysql-default-user")
	}
	if c.WireVersion == wire.Version6 || !c.Combined || c.RespPayload {
		return errors.New("option --protocol mysql: needs intercept protocol version 7 (the target's answers carry their bytes): not with --wire-version 6, --no-combined or --resp-payload")
	}
	for _, p := range m.Ports {
		found := false
		for _, mp := range c.Mappings {
			found = found || mp.Online.Port() == p
		}
		if !found {
			return fmt.Errorf("option --protocol: no -x mapping has online port %d", p)
		}
	}
	return nil
}

// mysqlTargets returns the targets of the mappings copied as MySQL.
func (c *Config) mysqlTargets() map[netip.AddrPort]bool {
	t := map[netip.AddrPort]bool{}
	for _, mp := range c.Mappings {
		if len(c.MySQL.Ports) == 0 {
			t[mp.Target] = true
			continue
		}
		for _, p := range c.MySQL.Ports {
			if mp.Online.Port() == p {
				t[mp.Target] = true
			}
		}
	}
	return t
}

// mysqlModule loads the users file and builds the module's configuration;
// nil when the module is off.
func (c *Config) mysqlModule(log interface {
	Warn(string, ...any)
}) (*mysqlcopy.Config, error) {
	if !c.MySQL.On {
		return nil, nil
	}
	users, err := mysqlcopy.LoadUsers(c.MySQL.UsersFile)
	if err != nil {
		return nil, fmt.Errorf("option --mysql-users: %w", err)
	}
	if u := c.MySQL.DefaultUser; u != "" {
		if _, ok := users[u]; !ok {
			return nil, fmt.Errorf("option --mysql-default-user: %q is not in %s", u, c.MySQL.UsersFile)
		}
	}
	return &mysqlcopy.Config{
		Users:        users,
		DefaultUser:  c.MySQL.DefaultUser,
		DefaultDB:    c.MySQL.DefaultDB,
		ReadOnly:     c.MySQL.ReadOnly,
		Learnt:       mysqlcopy.NewLogins(0),
		LoginTimeout: 10 * time.Second,
	}, nil
}

// wantOnline reports whether the online server's answers are captured:
// for the response comparison, or the MySQL module (prepare answers).
func (c *Config) wantOnline() bool { return c.CompareBytes > 0 || c.MySQL.On }

// linkWindow is the response window asked of intercept: the comparison's,
// and at least what the MySQL module reads.
func (c *Config) linkWindow() int {
	if c.MySQL.On {
		return max(c.CompareBytes, mysqlWindow)
	}
	return c.CompareBytes
}
