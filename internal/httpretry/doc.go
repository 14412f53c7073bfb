// Package httpretry holds the HTTP retry mechanics tokenward's packages
// share, each in one place: the parser of Retry-After, and NotSent, the one
// answer to "can this failed request have reached the server?" on which the
// promise never to replay a single-use credential (a rotated refresh token,
// an authorization code) rests.
package httpretry
