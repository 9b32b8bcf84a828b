package collector

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ParseBuckets parses comma-separated histogram upper bounds in seconds. They
// must be positive, finite and strictly ascending.
func ParseBuckets(s string) ([]float64, error) {
	var out []float64
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		v, err := strconv.ParseFloat(f, 64)
		if err != nil {
			return nil, fmt.Errorf("bucket %q: %w", f, err)
		}
		switch {
		case v <= 0 || math.IsInf(v, 0) || math.IsNaN(v):
			return nil, fmt.Errorf("bucket %q: must be a positive finite number of seconds", f)
		case len(out) > 0 && v <= out[len(out)-1]:
			return nil, fmt.Errorf("bucket %q: bounds must be strictly ascending", f)
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, errors.New("no buckets given")
	}
	return out, nil
}

// FormatBuckets formats bounds as ParseBuckets reads them.
func FormatBuckets(bounds []float64) string {
	parts := make([]string, len(bounds))
	for i, b := range bounds {
		parts[i] = strconv.FormatFloat(b, 'g', -1, 64)
	}
	return strings.Join(parts, ",")
}
