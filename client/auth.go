package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// Permission grants read or readwrite access to the keys under Prefix.
type Permission struct {
	Prefix string `json:"prefix"`
	Access string `json:"access"` // "read" or "readwrite"
}

// Role is a named set of permissions; Admin adds cluster operations.
type Role struct {
	Name        string       `json:"name"`
	Admin       bool         `json:"admin,omitempty"`
	Permissions []Permission `json:"permissions"`
}

// Token describes a token; Secret is set only in CreateToken's answer.
type Token struct {
	ID          string   `json:"id"`
	Roles       []string `json:"roles"`
	Description string   `json:"description,omitempty"`
	// ExpiresAt is unix nanoseconds (0: never).
	ExpiresAt int64  `json:"expires_at,omitempty"`
	Secret    string `json:"token,omitempty"`
}

// CreateToken makes a token with roles, valid for ttl (0: until revoked).
// The answer's Secret is shown once: store it.
func (c *Client) CreateToken(ctx context.Context, roles []string, ttl time.Duration, description string) (Token, error) {
	body := map[string]any{"roles": roles, "description": description}
	if ttl > 0 {
		body["ttl"] = ttl.String()
	}
	var t Token
	err := c.sendJSON(ctx, http.MethodPost, "/v1/auth/tokens", body, false, &t)
	return t, err
}

// RevokeToken deletes token id.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	return c.sendJSON(ctx, http.MethodDelete, "/v1/auth/tokens/"+url.PathEscape(id), nil, true, nil)
}

// Tokens lists the tokens, without secrets.
func (c *Client) Tokens(ctx context.Context) ([]Token, error) {
	var out struct {
		Tokens []Token `json:"tokens"`
	}
	err := c.getJSON(ctx, "/v1/auth/tokens", &out)
	return out.Tokens, err
}

// PutRole creates or replaces role r.
func (c *Client) PutRole(ctx context.Context, r Role) error {
	if r.Name == "" {
		return fmt.Errorf("%w: a role needs a name", ErrBadRequest)
	}
	body := map[string]any{"admin": r.Admin, "permissions": r.Permissions}
	return c.sendJSON(ctx, http.MethodPut, "/v1/auth/roles/"+url.PathEscape(r.Name), body, true, nil)
}

// DeleteRole removes role name.
func (c *Client) DeleteRole(ctx context.Context, name string) error {
	return c.sendJSON(ctx, http.MethodDelete, "/v1/auth/roles/"+url.PathEscape(name), nil, true, nil)
}

// GetRole returns role name.
func (c *Client) GetRole(ctx context.Context, name string) (Role, error) {
	var r Role
	err := c.getJSON(ctx, "/v1/auth/roles/"+url.PathEscape(name), &r)
	return r, err
}

// Roles lists every role.
func (c *Client) Roles(ctx context.Context) ([]Role, error) {
	var out struct {
		Roles []Role `json:"roles"`
	}
	err := c.getJSON(ctx, "/v1/auth/roles", &out)
	return out.Roles, err
}

func (c *Client) getJSON(ctx context.Context, path string, out any) error {
	resp, err := c.do(ctx, request{method: http.MethodGet, path: path})
	if err != nil {
		return err
	}
	return decodeJSON(resp, out)
}

// sendJSON sends a write with an optional JSON body and decodes the answer
// into out when out is not nil.
func (c *Client) sendJSON(ctx context.Context, method, path string, body any, idempotent bool, out any) error {
	r := request{method: method, path: path, write: true, idempotent: idempotent}
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r.body, r.header = data, http.Header{"Content-Type": {"application/json"}}
	}
	resp, err := c.do(ctx, r)
	if err != nil || out == nil {
		return err
	}
	return decodeJSON(resp, out)
}
