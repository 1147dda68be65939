package proxywasm

import (
	"errors"
	"fmt"
	"math"
	"testing"
)

type stringer struct{ n int }

func (s stringer) String() string { return fmt.Sprint("S", s.n) }

type point struct {
	X, Y int
	Name string
}

// Sprintf agrees with fmt.Sprintf on what plugins log.
func TestSprintfMatchesFmt(t *testing.T) {
	cases := []struct {
		format string
		args   []any
	}{
		{"hello: %s %s", []any{"GET", "/orders?id=7"}},
		{"%d requests, %v bytes, %t", []any{42, uint64(7), true}},
		{"%5d|%-5d|%05d|%+d|% d", []any{42, 42, -42, 42, 42}},
		{"%x %X %#x %o %b %c %U", []any{255, 255, 255, 8, 5, 'é', 0x1F600}},
		{"%q %q %#q", []any{"a\"b\n", 'x', "plain"}},
		{"%f %.2f %e %g %v %8.3f", []any{3.14159, 2.5, 1234.5, 0.000001, 1e21, math.Pi}},
		{"%v %s %v", []any{errors.New("boom"), stringer{3}, []stringer{{1}, {2}}}},
		{"%v %+v %v", []any{point{1, 2, "p"}, point{1, 2, "p"}, &point{3, 4, "q"}}},
		{"%v %v %v", []any{[]string{"a", "b"}, map[string]int{"b": 2, "a": 1}, [][2]string{{"k", "v"}}}},
		{"%s %x %v", []any{[]byte("hi"), []byte("hi"), []byte("hi")}},
		{"%v %s %d", []any{nil, nil, nil}},
		{"%.3s|%10s|%-10s|", []any{"abcdef", "right", "left"}},
		{"100%% %d", []any{1}},
		{"%d", []any{}},
		{"%d", []any{1, 2}},
		{"%d %s", []any{"str", 5}},
		{"%T %T", []any{1, "s"}},
		{"%*d|%-*d|", []any{6, 12, 4, 7}},
		{"%v %d", []any{int64(math.MinInt64), uint8(200)}},
		{"trailing %", nil},
	}
	for _, c := range cases {
		want := fmt.Sprintf(c.format, c.args...)
		if got := Sprintf(c.format, c.args...); got != want {
			t.Errorf("Sprintf(%q, %v)\n got %q\nwant %q", c.format, c.args, got, want)
		}
	}
}
