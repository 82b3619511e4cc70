package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

// outputFlag adds -o/--output to a command.
func outputFlag(cmd *cobra.Command, p *string, formats string) {
	cmd.Flags().StringVarP(p, "output", "o", "", "output format: "+formats)
}

// printStructured writes v as json or yaml; it returns false for the
// default (human) format.
func printStructured(w io.Writer, format string, v any) (bool, error) {
	switch format {
	case "":
		return false, nil
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return true, enc.Encode(v)
	case "yaml":
		b, err := yaml.Marshal(v)
		if err != nil {
			return true, err
		}
		_, err = w.Write(b)
		return true, err
	}
	return true, fmt.Errorf("unknown output format %q (want json or yaml)", format)
}

// table prints aligned columns.
type table struct{ tw *tabwriter.Writer }

func newTable(headers ...string) *table {
	t := &table{tw: tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)}
	t.row(anySlice(headers)...)
	return t
}

func (t *table) row(cols ...any) {
	parts := make([]string, len(cols))
	for i, c := range cols {
		parts[i] = fmt.Sprint(c)
	}
	fmt.Fprintln(t.tw, strings.Join(parts, "\t"))
}

func (t *table) flush() { _ = t.tw.Flush() }

func anySlice(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// age formats how long ago t was, like "3m" or "2h".
func age(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// reporter sends human messages to stdout, or to stderr when a structured
// format (-o json|yaml) is asked for, so stdout stays parseable.
type reporter struct{ format string }

func (r reporter) say(format string, args ...any) {
	w := os.Stdout
	if r.format != "" {
		w = os.Stderr
	}
	fmt.Fprintf(w, format+"\n", args...)
}

// result prints v in the structured format, if one was asked for.
func (r reporter) result(v any) error {
	_, err := printStructured(os.Stdout, r.format, v)
	return err
}
