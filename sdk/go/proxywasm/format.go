package proxywasm

import (
	"reflect"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Sprintf formats like fmt.Sprintf for the usual verbs (%v %+v %s %q %d
// %x %X %o %b %c %t %f %e %g %T %%, with width, precision and the
// - + 0 # flags), without importing fmt: fmt imports os, and a module
// that links os (through fmt, encoding/json, time, log, ...) does not
// start on a host that answers ENOSYS to WASI fd_prestat_get, as weft
// does today (see the SDK README). Log*f use it.
func Sprintf(format string, args ...any) string {
	p := printer{buf: make([]byte, 0, len(format)+16*len(args))}
	p.printf(format, args)
	return string(p.buf)
}

type printer struct {
	buf []byte
	// the directive being formatted
	minus, plus, zero, sharp, space bool
	width, prec                     int // -1: not given
}

func (p *printer) printf(format string, args []any) {
	argi := 0
	for i := 0; i < len(format); {
		c := format[i]
		if c != '%' {
			j := i + 1
			for j < len(format) && format[j] != '%' {
				j++
			}
			p.buf = append(p.buf, format[i:j]...)
			i = j
			continue
		}
		i++
		p.minus, p.plus, p.zero, p.sharp, p.space = false, false, false, false, false
		p.width, p.prec = -1, -1
	flags:
		for ; i < len(format); i++ {
			switch format[i] {
			case '-':
				p.minus = true
			case '+':
				p.plus = true
			case '0':
				p.zero = true
			case '#':
				p.sharp = true
			case ' ':
				p.space = true
			default:
				break flags
			}
		}
		p.width, i, argi = number(format, i, args, argi)
		if i < len(format) && format[i] == '.' {
			p.prec, i, argi = number(format, i+1, args, argi)
			if p.prec < 0 {
				p.prec = 0
			}
		}
		if i >= len(format) {
			p.buf = append(p.buf, "%!(NOVERB)"...)
			break
		}
		verb, size := utf8.DecodeRuneInString(format[i:])
		i += size
		if verb == '%' {
			p.buf = append(p.buf, '%')
			continue
		}
		if argi >= len(args) {
			p.buf = append(p.buf, "%!"...)
			p.buf = utf8.AppendRune(p.buf, verb)
			p.buf = append(p.buf, "(MISSING)"...)
			continue
		}
		p.pad(p.arg(args[argi], verb), verb)
		argi++
	}
	if argi < len(args) {
		p.buf = append(p.buf, "%!(EXTRA "...)
		for k, a := range args[argi:] {
			if k > 0 {
				p.buf = append(p.buf, ", "...)
			}
			p.buf = append(p.buf, typeName(a)...)
			p.buf = append(p.buf, '=')
			p.buf = append(p.buf, formatValue(a, 'v', -1, false, false)...)
		}
		p.buf = append(p.buf, ')')
	}
}

// number reads a width or precision: digits, or * taking an int argument.
func number(format string, i int, args []any, argi int) (int, int, int) {
	if i < len(format) && format[i] == '*' {
		n := -1
		if argi < len(args) {
			if v, ok := args[argi].(int); ok {
				n = v
			}
			argi++
		}
		return n, i + 1, argi
	}
	n, start := 0, i
	for i < len(format) && format[i] >= '0' && format[i] <= '9' && n < 1e6 {
		n = n*10 + int(format[i]-'0')
		i++
	}
	if i == start {
		return -1, i, argi
	}
	return n, i, argi
}

func (p *printer) pad(s string, verb rune) {
	n := utf8.RuneCountInString(s)
	if p.width <= n {
		p.buf = append(p.buf, s...)
		return
	}
	fill := p.width - n
	switch {
	case p.minus:
		p.buf = append(p.buf, s...)
		for ; fill > 0; fill-- {
			p.buf = append(p.buf, ' ')
		}
	case p.zero && isNumericVerb(verb):
		// Zeros go after the sign.
		if len(s) > 0 && (s[0] == '-' || s[0] == '+' || s[0] == ' ') {
			p.buf = append(p.buf, s[0])
			s = s[1:]
		}
		for ; fill > 0; fill-- {
			p.buf = append(p.buf, '0')
		}
		p.buf = append(p.buf, s...)
	default:
		for ; fill > 0; fill-- {
			p.buf = append(p.buf, ' ')
		}
		p.buf = append(p.buf, s...)
	}
}

func isNumericVerb(verb rune) bool {
	switch verb {
	case 'd', 'x', 'X', 'o', 'b', 'f', 'F', 'e', 'E', 'g', 'G', 'v':
		return true
	}
	return false
}

func (p *printer) arg(a any, verb rune) string {
	if verb == 'T' {
		return typeName(a)
	}
	s := formatValue(a, verb, p.prec, p.plus, p.sharp)
	if p.space && (verb == 'd' || verb == 'f' || verb == 'e' || verb == 'g') && len(s) > 0 && s[0] != '-' && s[0] != '+' {
		s = " " + s
	}
	return s
}

func typeName(a any) string {
	if a == nil {
		return "<nil>"
	}
	return reflect.TypeOf(a).String()
}

// formatValue formats one operand.
func formatValue(a any, verb rune, prec int, plus, sharp bool) string {
	if a == nil {
		if verb == 'v' {
			return "<nil>"
		}
		return "%!" + string(verb) + "(<nil>)"
	}
	if verb == 'v' || verb == 's' || verb == 'q' {
		switch x := a.(type) {
		case error:
			return quoteIf(verb, safeCall(x.Error))
		case interface{ String() string }:
			return quoteIf(verb, safeCall(x.String))
		}
	}
	names := plus && verb == 'v'
	return formatReflect(reflect.ValueOf(a), verb, prec, plus && !names, names, sharp, 0)
}

func quoteIf(verb rune, s string) string {
	if verb == 'q' {
		return strconv.Quote(s)
	}
	return s
}

// safeCall runs an Error or String method that may panic (a nil pointer
// receiver, typically) the way fmt reports it.
func safeCall(f func() string) (s string) {
	defer func() {
		if r := recover(); r != nil {
			s = "<nil>"
		}
	}()
	return f()
}

// plus is the + flag as a sign; names is %+v (struct field names).
func formatReflect(v reflect.Value, verb rune, prec int, plus, names, sharp bool, depth int) string {
	if !v.IsValid() {
		return "<nil>"
	}
	if depth > 0 && v.CanInterface() && (verb == 'v' || verb == 's' || verb == 'q') {
		switch x := v.Interface().(type) {
		case error:
			return quoteIf(verb, safeCall(x.Error))
		case interface{ String() string }:
			return quoteIf(verb, safeCall(x.String))
		}
	}
	bad := func() string {
		return "%!" + string(verb) + "(" + v.Type().String() + "=" + formatReflect(v, 'v', -1, false, false, false, depth+1) + ")"
	}
	switch v.Kind() {
	case reflect.Bool:
		if verb == 'v' || verb == 't' {
			return strconv.FormatBool(v.Bool())
		}
		return bad()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return formatInt(v.Int(), verb, plus, sharp, bad)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return formatUint(v.Uint(), verb, sharp, bad)
	case reflect.Float32, reflect.Float64:
		return formatFloat(v.Float(), v.Type().Bits(), verb, prec, plus, bad)
	case reflect.Complex64, reflect.Complex128:
		return strconv.FormatComplex(v.Complex(), 'g', -1, v.Type().Bits())
	case reflect.String:
		return formatString(v.String(), verb, prec, sharp, bad)
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 && verb != 'v' && verb != 'd' {
			b := make([]byte, v.Len())
			reflect.Copy(reflect.ValueOf(b), v)
			return formatString(string(b), verb, prec, sharp, bad)
		}
		if v.Kind() == reflect.Slice && v.IsNil() && sharp {
			return v.Type().String() + "(nil)"
		}
		out := []byte{'['}
		for i := 0; i < v.Len(); i++ {
			if i > 0 {
				out = append(out, ' ')
			}
			out = append(out, formatReflect(v.Index(i), verb, prec, plus, names, sharp, depth+1)...)
		}
		return string(append(out, ']'))
	case reflect.Map:
		type kv struct{ k, v string }
		var entries []kv
		iter := v.MapRange()
		for iter.Next() {
			entries = append(entries, kv{
				formatReflect(iter.Key(), verb, prec, plus, names, sharp, depth+1),
				formatReflect(iter.Value(), verb, prec, plus, names, sharp, depth+1),
			})
		}
		slices.SortFunc(entries, func(a, b kv) int {
			switch {
			case a.k < b.k:
				return -1
			case a.k > b.k:
				return 1
			}
			return 0
		})
		out := []byte("map[")
		for i, e := range entries {
			if i > 0 {
				out = append(out, ' ')
			}
			out = append(out, e.k...)
			out = append(out, ':')
			out = append(out, e.v...)
		}
		return string(append(out, ']'))
	case reflect.Struct:
		out := []byte{'{'}
		for i := 0; i < v.NumField(); i++ {
			if i > 0 {
				out = append(out, ' ')
			}
			if names {
				out = append(out, v.Type().Field(i).Name...)
				out = append(out, ':')
			}
			out = append(out, formatReflect(v.Field(i), verb, prec, plus, names, sharp, depth+1)...)
		}
		return string(append(out, '}'))
	case reflect.Interface:
		if v.IsNil() {
			return "<nil>"
		}
		return formatReflect(v.Elem(), verb, prec, plus, names, sharp, depth+1)
	case reflect.Pointer:
		if v.IsNil() {
			return "<nil>"
		}
		if depth == 0 && verb == 'v' {
			switch v.Elem().Kind() {
			case reflect.Struct, reflect.Slice, reflect.Array, reflect.Map:
				return "&" + formatReflect(v.Elem(), verb, prec, plus, names, sharp, depth+1)
			}
		}
		return "0x" + strconv.FormatUint(uint64(v.Pointer()), 16)
	case reflect.Chan, reflect.Func, reflect.UnsafePointer:
		if v.IsNil() {
			return "<nil>"
		}
		return "0x" + strconv.FormatUint(uint64(v.Pointer()), 16)
	}
	return "?"
}

func formatInt(n int64, verb rune, plus, sharp bool, bad func() string) string {
	sign := ""
	u := uint64(n)
	if n < 0 {
		sign, u = "-", uint64(-n)
	} else if plus {
		sign = "+"
	}
	switch verb {
	case 'v', 'd':
		return sign + strconv.FormatUint(u, 10)
	case 'c':
		return string(rune(n))
	case 'q':
		return strconv.QuoteRune(rune(n))
	case 'U':
		return "U+" + upperHex(u, 4)
	}
	s := formatUint(u, verb, sharp, bad)
	return sign + s
}

func formatUint(u uint64, verb rune, sharp bool, bad func() string) string {
	switch verb {
	case 'v', 'd':
		return strconv.FormatUint(u, 10)
	case 'x':
		return prefix(sharp, "0x") + strconv.FormatUint(u, 16)
	case 'X':
		return prefix(sharp, "0X") + upperHex(u, 0)
	case 'o':
		return prefix(sharp, "0") + strconv.FormatUint(u, 8)
	case 'b':
		return strconv.FormatUint(u, 2)
	case 'c':
		return string(rune(u))
	case 'q':
		return strconv.QuoteRune(rune(u))
	case 'U':
		return "U+" + upperHex(u, 4)
	}
	return bad()
}

func prefix(sharp bool, p string) string {
	if sharp {
		return p
	}
	return ""
}

func upperHex(u uint64, minDigits int) string {
	s := []byte(strconv.FormatUint(u, 16))
	for i, c := range s {
		if c >= 'a' && c <= 'f' {
			s[i] = c - 'a' + 'A'
		}
	}
	for len(s) < minDigits {
		s = append([]byte{'0'}, s...)
	}
	return string(s)
}

func formatFloat(f float64, bits int, verb rune, prec int, plus bool, bad func() string) string {
	var s string
	switch verb {
	case 'v', 'g', 'G':
		fm := byte('g')
		if verb == 'G' {
			fm = 'G'
		}
		s = strconv.FormatFloat(f, fm, prec, bits)
	case 'f', 'F', 'e', 'E':
		if prec < 0 {
			prec = 6
		}
		fm := byte(verb)
		if verb == 'F' {
			fm = 'f'
		}
		s = strconv.FormatFloat(f, fm, prec, bits)
	default:
		return bad()
	}
	if plus && len(s) > 0 && s[0] != '-' && s[0] != '+' {
		s = "+" + s
	}
	return s
}

func formatString(s string, verb rune, prec int, sharp bool, bad func() string) string {
	if prec >= 0 && (verb == 's' || verb == 'v' || verb == 'q') {
		n := 0
		for i := range s {
			if n == prec {
				s = s[:i]
				break
			}
			n++
		}
	}
	switch verb {
	case 'v', 's':
		return s
	case 'q':
		if sharp && strconv.CanBackquote(s) {
			return "`" + s + "`"
		}
		return strconv.Quote(s)
	case 'x', 'X':
		const lower, upper = "0123456789abcdef", "0123456789ABCDEF"
		digits := lower
		if verb == 'X' {
			digits = upper
		}
		out := make([]byte, 0, 2*len(s))
		for i := 0; i < len(s); i++ {
			out = append(out, digits[s[i]>>4], digits[s[i]&15])
		}
		return string(out)
	}
	return bad()
}
