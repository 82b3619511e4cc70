package model

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// MilliCPU is CPU in thousandths of a core. In specs it is written in cores
// as a number or string ("0.25", 0.25) or in millicores ("250m").
type MilliCPU int64

// ParseCPU parses "0.25", "2" or "250m".
func ParseCPU(s string) (MilliCPU, error) {
	s = strings.TrimSpace(s)
	if strings.HasSuffix(s, "m") {
		n, err := strconv.ParseInt(strings.TrimSuffix(s, "m"), 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("invalid cpu %q: want cores like 0.5 or millicores like 500m", s)
		}
		return MilliCPU(n), nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1e6 {
		return 0, fmt.Errorf("invalid cpu %q: want cores like 0.5 or millicores like 500m", s)
	}
	return MilliCPU(math.Round(f * 1000)), nil
}

// Cores returns the value in cores.
func (c MilliCPU) Cores() float64 { return float64(c) / 1000 }

// String formats as cores ("0.1", "2").
func (c MilliCPU) String() string { return strconv.FormatFloat(c.Cores(), 'f', -1, 64) }

// MarshalJSON writes cores as a number.
func (c MilliCPU) MarshalJSON() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalJSON accepts a number of cores or a string.
func (c *MilliCPU) UnmarshalJSON(b []byte) error {
	s := string(b)
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
	}
	v, err := ParseCPU(s)
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// ByteSize is a size in bytes, written with binary (Ki, Mi, Gi, Ti) or
// decimal (k, K, M, G, T) units, or as a plain number of bytes.
type ByteSize int64

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
	{"k", 1e3}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12},
}

// ParseByteSize parses "64Mi", "1G", "512" and similar.
func ParseByteSize(s string) (ByteSize, error) {
	s = strings.TrimSpace(s)
	num, mult := s, int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(s, u.suffix) {
			num, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || num == "" || strings.ContainsAny(num, "eEinIN") || f < 0 {
		return 0, fmt.Errorf("invalid size %q: want a number with an optional unit Ki, Mi, Gi, Ti, k, M, G or T", s)
	}
	v := f * float64(mult)
	if v > float64(math.MaxInt64/2) {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return ByteSize(math.Round(v)), nil
}

// String formats with the largest binary unit that divides the value.
func (b ByteSize) String() string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"Ti", 1 << 40}, {"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}} {
		if b != 0 && int64(b)%u.mult == 0 {
			return strconv.FormatInt(int64(b)/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// Human formats for people, rounded to one decimal: "23.5Gi".
func (b ByteSize) Human() string {
	units := []string{"Ki", "Mi", "Gi", "Ti"}
	v, unit := float64(b), ""
	for _, u := range units {
		if v < 1024 {
			break
		}
		v, unit = v/1024, u
	}
	return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64) + unit
}

// MarshalJSON writes the String form.
func (b ByteSize) MarshalJSON() ([]byte, error) { return json.Marshal(b.String()) }

// UnmarshalJSON accepts a string with units or a number of bytes.
func (b *ByteSize) UnmarshalJSON(data []byte) error {
	s := string(data)
	if len(data) > 0 && data[0] == '"' {
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
	}
	v, err := ParseByteSize(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// Duration is a time.Duration written as a Go duration string ("10s",
// "1m30s") or a number of seconds.
type Duration struct{ time.Duration }

// D makes a Duration.
func D(d time.Duration) Duration { return Duration{d} }

// MarshalJSON writes the duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.Duration.String()) }

// UnmarshalJSON accepts "10s" or 10 (seconds).
func (d *Duration) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("invalid duration %q: want e.g. 500ms, 10s, 1m", s)
		}
		d.Duration = v
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsNaN(f) || math.Abs(f) > 1e9 {
		return fmt.Errorf("invalid duration %s: want e.g. \"10s\" or a number of seconds", b)
	}
	d.Duration = time.Duration(f * float64(time.Second))
	return nil
}

// IsZero lets omitempty-aware encoders skip zero durations.
func (d Duration) IsZero() bool { return d.Duration == 0 }
