// Package cliconfig stores the CLI's context: which server to talk to and
// with which token. `berth up` writes it; every other command reads it
// unless --server/--token or BERTH_SERVER/BERTH_TOKEN override it.
package cliconfig

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Context is what the CLI needs to reach a server.
type Context struct {
	Server string `json:"server"`
	Token  string `json:"token"`
	// CA is the PEM certificate of the cluster CA that signed the
	// server's certificate (`berth server` writes it); empty for plain
	// HTTP servers.
	CA string `json:"ca,omitempty"`
}

// Path is where the context lives: $BERTH_CONFIG, else
// ~/.berth/context.json.
func Path() string {
	if p := os.Getenv("BERTH_CONFIG"); p != "" {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = "."
	}
	return filepath.Join(home, ".berth", "context.json")
}

// Load reads the context; a missing file gives an empty Context.
func Load() (Context, error) {
	var c Context
	b, err := os.ReadFile(Path())
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("read CLI context %s: %w", Path(), err)
	}
	return c, nil
}

// Save writes the context readable by the owner only.
func Save(c Context) error {
	p := Path()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(c, "", "  ")
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}
