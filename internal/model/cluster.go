package model

import "time"

// Cluster key prefixes: join tokens and the certificate each node holds.
const (
	PrefixJoinTokens = "/jointokens/"
	PrefixNodeCerts  = "/nodecerts/"
)

// JoinTokenKey is where a join token is stored (hashed).
func JoinTokenKey(id string) string { return PrefixJoinTokens + id }

// NodeCertKey is where the certificate a node's agent holds is recorded.
func NodeCertKey(node string) string { return PrefixNodeCerts + node }

// JoinToken lets an agent join the cluster once it proves the secret.
// Only the secret's SHA-256 is stored.
type JoinToken struct {
	ID          string    `json:"id"`
	SecretHash  string    `json:"secretHash,omitempty"`
	Description string    `json:"description,omitempty"`
	CreatedAt   time.Time `json:"createdAt"`
	// ExpiresAt zero means the token never expires.
	ExpiresAt time.Time `json:"expiresAt,omitempty"`
	Revoked   bool      `json:"revoked,omitempty"`
	// Uses counts successful joins.
	Uses int `json:"uses,omitempty"`
}

// CreatedJoinToken is the answer to creating a token: the only time the
// full token (with its secret) is shown.
type CreatedJoinToken struct {
	JoinToken
	Token string `json:"token"`
}

// NodeCert records the client certificate a node's agent holds; a second
// agent asking for the same name with another key is refused.
type NodeCert struct {
	Node string `json:"node"`
	// PublicKeySHA256 is the hex SHA-256 of the key's SubjectPublicKeyInfo.
	PublicKeySHA256 string    `json:"publicKeySHA256"`
	Serial          string    `json:"serial"`
	NotAfter        time.Time `json:"notAfter"`
	IssuedAt        time.Time `json:"issuedAt"`
}

// JoinRequest is the body of POST /v1/cluster/join (token) and
// POST /v1/cluster/renew (mTLS, no token).
type JoinRequest struct {
	Token  string `json:"token,omitempty"`
	Node   string `json:"node"`
	CSRPEM string `json:"csrPEM"`
}

// JoinResponse carries the signed certificate and the CA.
type JoinResponse struct {
	CertPEM  string    `json:"certPEM"`
	CAPEM    string    `json:"caPEM"`
	NotAfter time.Time `json:"notAfter"`
}

// ValidateNodeName returns what is wrong with a node name, or "".
func ValidateNodeName(name string) string {
	if name == "" || len(name) > 63 {
		return "must be 1 to 63 characters"
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_'
		if !ok {
			return "may hold only letters, digits, '-', '.' and '_'"
		}
	}
	if name == "." || name == ".." {
		return "must not be . or .."
	}
	return ""
}
