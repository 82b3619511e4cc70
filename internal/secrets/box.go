// Package secrets keeps secrets encrypted at rest: values are sealed with
// AES-256-GCM under a key that lives in the server's data dir (not in the
// store), so a copy of the store — a backup, an etcd snapshot — reveals
// names but no values.
package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// KeyFile is the key's file name in the data dir.
const KeyFile = "secrets.key"

// sealVersion prefixes sealed data, so the format can change later.
const sealVersion = 1

// Box seals and opens secret values. It is safe for concurrent use.
type Box struct{ aead cipher.AEAD }

// OpenBox loads dir/secrets.key, creating a random key (mode 0600) at
// first use.
func OpenBox(dir string) (*Box, error) {
	p := filepath.Join(dir, KeyFile)
	key, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("secrets: create key: %w", err)
		}
		_, err = f.Write(key)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("secrets: write key: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("secrets: read key: %w", err)
	}
	return NewBox(key)
}

// NewBox makes a box from a 32-byte key.
func NewBox(key []byte) (*Box, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("secrets: key must be 32 bytes, got %d (is %s damaged?)", len(key), KeyFile)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Box{aead: aead}, nil
}

// Seal encrypts plain; aad (e.g. the secret's store key) is bound to it,
// so a sealed value moved to another secret does not open.
func (b *Box) Seal(plain, aad []byte) []byte {
	nonce := make([]byte, b.aead.NonceSize())
	_, _ = rand.Read(nonce)
	out := append([]byte{sealVersion}, nonce...)
	return b.aead.Seal(out, nonce, plain, aad)
}

// Open decrypts what Seal made with the same aad.
func (b *Box) Open(sealed, aad []byte) ([]byte, error) {
	n := b.aead.NonceSize()
	if len(sealed) < 1+n || sealed[0] != sealVersion {
		return nil, errors.New("secrets: not a sealed value (unknown format)")
	}
	plain, err := b.aead.Open(nil, sealed[1:1+n], sealed[1+n:], aad)
	if err != nil {
		return nil, errors.New("secrets: cannot open the sealed value (wrong key, or tampered with)")
	}
	return plain, nil
}
