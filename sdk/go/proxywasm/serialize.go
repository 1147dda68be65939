package proxywasm

import (
	"encoding/binary"
	"strings"
)

// serializeMap encodes header pairs the proxy-wasm way: a little-endian
// u32 count, then a (key length, value length) u32 pair per entry, then
// each key and value followed by a NUL byte.
func serializeMap(pairs [][2]string) []byte {
	if len(pairs) == 0 {
		return nil
	}
	size := 4
	for _, p := range pairs {
		size += 8 + len(p[0]) + 1 + len(p[1]) + 1
	}
	buf := make([]byte, size)
	binary.LittleEndian.PutUint32(buf, uint32(len(pairs)))
	lengths := buf[4:]
	data := 4 + 8*len(pairs)
	for i, p := range pairs {
		binary.LittleEndian.PutUint32(lengths[8*i:], uint32(len(p[0])))
		binary.LittleEndian.PutUint32(lengths[8*i+4:], uint32(len(p[1])))
		data += copy(buf[data:], p[0]) + 1 // the NUL is already there
		data += copy(buf[data:], p[1]) + 1
	}
	return buf
}

// deserializeMap decodes what serializeMap encodes; an empty value (or a
// single 0 byte) is an empty map.
func deserializeMap(b []byte) ([][2]string, error) {
	if len(b) < 4 {
		return nil, nil
	}
	n := binary.LittleEndian.Uint32(b)
	if uint64(n)*8+4 > uint64(len(b)) {
		return nil, ErrParseFailure
	}
	pairs := make([][2]string, n)
	data := 4 + 8*int(n)
	for i := range pairs {
		klen := int(binary.LittleEndian.Uint32(b[4+8*i:]))
		vlen := int(binary.LittleEndian.Uint32(b[8+8*i:]))
		if klen < 0 || vlen < 0 || data+klen+1+vlen+1 > len(b) || data+klen+1+vlen+1 < data {
			return nil, ErrParseFailure
		}
		pairs[i][0] = string(b[data : data+klen])
		data += klen + 1
		pairs[i][1] = string(b[data : data+vlen])
		data += vlen + 1
	}
	return pairs, nil
}

// serializePropertyPath joins path segments with NUL bytes
// (["request", "path"] → "request\x00path").
func serializePropertyPath(path []string) string {
	return strings.Join(path, "\x00")
}
