package proxywasm

import (
	"bytes"
	"reflect"
	"testing"
)

func TestSerializeMapMatchesSpecExample(t *testing.T) {
	// The specification's example: {{"a": "1"}, {"b": "22"}}.
	got := serializeMap([][2]string{{"a", "1"}, {"b", "22"}})
	want := []byte{
		2, 0, 0, 0,
		1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0,
		'a', 0, '1', 0, 'b', 0, '2', '2', 0,
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("serializeMap = %v, want %v", got, want)
	}
	back, err := deserializeMap(got)
	if err != nil || !reflect.DeepEqual(back, [][2]string{{"a", "1"}, {"b", "22"}}) {
		t.Fatalf("deserializeMap = %v, %v", back, err)
	}
}

func TestDeserializeEmptyAndBroken(t *testing.T) {
	for _, b := range [][]byte{nil, {0}} {
		if m, err := deserializeMap(b); err != nil || len(m) != 0 {
			t.Fatalf("deserializeMap(%v) = %v, %v", b, m, err)
		}
	}
	broken := serializeMap([][2]string{{"key", "value"}})
	if _, err := deserializeMap(broken[:len(broken)-3]); err != ErrParseFailure {
		t.Fatalf("truncated map: err = %v", err)
	}
	if _, err := deserializeMap([]byte{0xff, 0xff, 0xff, 0xff}); err != ErrParseFailure {
		t.Fatalf("huge count: err = %v", err)
	}
}

func TestPropertyPath(t *testing.T) {
	if got := serializePropertyPath([]string{"request", "path"}); got != "request\x00path" {
		t.Fatalf("got %q", got)
	}
}

func TestStatusErrors(t *testing.T) {
	if statusErr(0) != nil {
		t.Fatal("OK is not an error")
	}
	if statusErr(1) != ErrNotFound || statusErr(8) != ErrCasMismatch {
		t.Fatal("status errors compare equal to the sentinels")
	}
}
