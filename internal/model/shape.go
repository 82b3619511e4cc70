package model

import (
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strings"
)

var (
	specType        = reflect.TypeOf(AppSpec{})
	unmarshalerType = reflect.TypeOf((*json.Unmarshaler)(nil)).Elem()
	plainKey        = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*$`)
)

// checkShape walks a decoded JSON value against a Go type and records, by
// field path, every unknown field and every value of the wrong type, so
// errors name "ports[0].containerPort" instead of a Go type.
func checkShape(t reflect.Type, v any, path string, errs *[]FieldError) {
	if v == nil {
		return // null leaves the zero value
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		checkLeaf(t, v, path, errs)
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			*errs = append(*errs, FieldError{Field: path, Message: "must be an object, got " + jsonKind(v)})
			return
		}
		fields := jsonFields(t)
		keys := sortedKeys(obj)
		for _, k := range keys {
			f, ok := fields[k]
			if !ok {
				*errs = append(*errs, FieldError{Field: join(path, k), Message: unknownMessage(k, fields)})
				continue
			}
			checkShape(f.Type, obj[k], join(path, k), errs)
		}
	case reflect.Slice:
		list, ok := v.([]any)
		if !ok {
			*errs = append(*errs, FieldError{Field: path, Message: "must be a list, got " + jsonKind(v)})
			return
		}
		for i, e := range list {
			checkShape(t.Elem(), e, fmt.Sprintf("%s[%d]", path, i), errs)
		}
	case reflect.Map:
		obj, ok := v.(map[string]any)
		if !ok {
			*errs = append(*errs, FieldError{Field: path, Message: "must be a map, got " + jsonKind(v)})
			return
		}
		for _, k := range sortedKeys(obj) {
			checkShape(t.Elem(), obj[k], mapPath(path, k), errs)
		}
	default:
		checkLeaf(t, v, path, errs)
	}
}

// checkLeaf decodes one value into its Go type to catch type errors.
func checkLeaf(t reflect.Type, v any, path string, errs *[]FieldError) {
	b, _ := json.Marshal(v)
	if err := json.Unmarshal(b, reflect.New(t).Interface()); err != nil {
		*errs = append(*errs, FieldError{Field: path, Message: leafMessage(t, v, err)})
	}
}

func leafMessage(t reflect.Type, v any, err error) string {
	if _, ok := err.(*json.UnmarshalTypeError); !ok {
		return strings.TrimPrefix(err.Error(), "json: ")
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "must be a whole number, got " + jsonKind(v)
	case reflect.String:
		return "must be a string, got " + jsonKind(v)
	case reflect.Bool:
		return "must be true or false, got " + jsonKind(v)
	}
	return "has the wrong type: " + jsonKind(v)
}

func jsonKind(v any) string {
	switch x := v.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	case string:
		return fmt.Sprintf("string %q", truncateString(x, 40))
	case float64:
		return fmt.Sprintf("number %v", x)
	case bool:
		return fmt.Sprintf("%v", x)
	}
	return "null"
}

func truncateString(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// jsonFields maps JSON names to struct fields.
func jsonFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f
	}
	return out
}

// unknownMessage suggests the field the user probably meant.
func unknownMessage(k string, fields map[string]reflect.StructField) string {
	for name := range fields {
		if strings.EqualFold(name, k) {
			return fmt.Sprintf("unknown field (did you mean %q?)", name)
		}
	}
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	sort.Strings(names)
	return "unknown field; known fields here: " + strings.Join(names, ", ")
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

// mapPath writes map keys as .key when plain and ["key"] otherwise.
func mapPath(path, key string) string {
	if plainKey.MatchString(key) && !strings.Contains(key, ".") {
		return join(path, key)
	}
	return fmt.Sprintf("%s[%q]", path, key)
}

func sortStrings(s []string) { sort.Strings(s) }
