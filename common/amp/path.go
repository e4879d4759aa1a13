package amp

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// pathVersion is the format byte at the start of an encoded path.
const pathVersion = '0'

// cacheBreakerBytes of randomness make every request URL distinct, so the
// cache never answers from a previous response.
const cacheBreakerBytes = 9

// EncodePath returns the path component that follows "amp/client/" for a
// client poll request.
func EncodePath(request []byte) string {
	var cb [cacheBreakerBytes]byte
	rand.Read(cb[:]) // crypto/rand.Read never fails (Go 1.24+).
	return string(pathVersion) + base64.RawURLEncoding.EncodeToString(cb[:]) + "/" +
		base64.RawURLEncoding.EncodeToString(request)
}

// ErrPathVersion is returned by [DecodePath] for a path not starting with
// the format byte '0'.
var ErrPathVersion = errors.New("amp: unknown path format")

// DecodePath reverses [EncodePath]: path is what follows "amp/client/".
// Only the first byte and the part after the last '/' are significant.
func DecodePath(path string) ([]byte, error) {
	if len(path) == 0 || path[0] != pathVersion {
		return nil, ErrPathVersion
	}
	i := strings.LastIndexByte(path, '/')
	if i < 0 {
		return nil, fmt.Errorf("amp: path has no '/'")
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(path[i+1:])
	if err != nil {
		return nil, fmt.Errorf("amp: decode path: %w", err)
	}
	return b, nil
}
