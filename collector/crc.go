package collector

// CRC-32 (IEEE) combination, after zlib's crc32_combine: the CRC of a
// concatenation computed from the parts' CRCs and the second part's length,
// so that a gzip stream assembled from cached, separately compressed pieces
// needs no pass over the uncompressed data.

const crcPoly = 0xedb88320 // reversed IEEE polynomial

// crcMulModP returns a*b modulo the CRC polynomial, in the reflected bit
// order the CRC uses (bit 31 is x^0).
func crcMulModP(a, b uint32) uint32 {
	m := uint32(1) << 31
	var p uint32
	for {
		if a&m != 0 {
			p ^= b
			if a&(m-1) == 0 {
				return p
			}
		}
		m >>= 1
		if b&1 != 0 {
			b = b>>1 ^ crcPoly
		} else {
			b >>= 1
		}
	}
}

// crcX2n[k] is x^(2^k) modulo the polynomial.
var crcX2n = func() (t [32]uint32) {
	p := uint32(1) << 30 // x^1
	t[0] = p
	for k := 1; k < len(t); k++ {
		p = crcMulModP(p, p)
		t[k] = p
	}
	return t
}()

// crcShift returns x^(8n) modulo the polynomial: the factor that moves a CRC
// past n bytes.
func crcShift(n int64) uint32 {
	p, k := uint32(1)<<31, 3 // x^0; 8n = n<<3
	for ; n != 0; n >>= 1 {
		if n&1 != 0 {
			p = crcMulModP(crcX2n[k&31], p)
		}
		k++
	}
	return p
}

// crcCombine returns the CRC of a+b from crcA, crcB and shift =
// crcShift(len(b)).
func crcCombine(crcA, crcB, shift uint32) uint32 {
	return crcMulModP(shift, crcA) ^ crcB
}
