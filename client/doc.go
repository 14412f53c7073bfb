// Package client is the front door of tokenward: it turns one Options into an
// authenticated *http.Client, with discovery, login flows, status and logout.
package client
