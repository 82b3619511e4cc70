package pki

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
)

// TokenPrefix starts every join token.
const TokenPrefix = "berth-join-"

// JoinToken is a parsed join token: berth-join-<CA fingerprint>.<id>.<secret>.
type JoinToken struct {
	// CAFingerprint is the hex SHA-256 of the CA certificate the agent
	// must find at the server (pinning).
	CAFingerprint string
	ID            string
	Secret        string
}

// String formats the token.
func (t JoinToken) String() string {
	return TokenPrefix + t.CAFingerprint + "." + t.ID + "." + t.Secret
}

// SecretHash is the stored form of the secret.
func (t JoinToken) SecretHash() string { return HashSecret(t.Secret) }

// HashSecret is the hex SHA-256 of a token secret.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// NewJoinToken makes a token for the CA with a random ID and secret.
func NewJoinToken(caFingerprint string) JoinToken {
	return JoinToken{CAFingerprint: caFingerprint, ID: randHex(8), Secret: randHex(16)}
}

// ErrMalformedToken says a token does not have the join token's shape.
var ErrMalformedToken = errors.New("malformed join token: expected berth-join-<64 hex CA fingerprint>.<16 hex id>.<32 hex secret>, as printed by 'berth token create'")

// ParseJoinToken parses and checks the shape of a token.
func ParseJoinToken(s string) (JoinToken, error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(s), TokenPrefix)
	if !ok {
		return JoinToken{}, ErrMalformedToken
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 3 || !isHex(parts[0], 64) || !isHex(parts[1], 16) || !isHex(parts[2], 32) {
		return JoinToken{}, ErrMalformedToken
	}
	return JoinToken{CAFingerprint: parts[0], ID: parts[1], Secret: parts[2]}, nil
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
