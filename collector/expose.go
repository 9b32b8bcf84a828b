package collector

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"hash/crc32"
	"hash/maphash"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/linkwatch/linkwatch_exporter/watcher"
)

// A view is one scrape's snapshot of the links, prepared and sorted for
// rendering.
type view struct {
	links []watcher.Link
	stats watcher.Stats
	preps []prepared
	arena []byte      // device labels of preps
	dev   []*prepared // by device, one link per device name
	info  []*prepared // dev, sorted for linkwatch_link_info
	// counters is whether any link has carrier counters.
	counters bool
}

// getView takes a snapshot into the spare view, or into a new one while
// another scrape uses the spare: a view of thousands of links is megabytes,
// so only one is kept.
func (c *Collector) getView() *view {
	c.viewMu.Lock()
	v := c.spare
	c.spare = nil
	c.viewMu.Unlock()
	if v == nil {
		v = &view{}
	}
	v.links, v.stats = c.src.Snapshot(v.links[:0])
	v.preps = slices.Grow(v.preps[:0], len(v.links))[:len(v.links)]
	v.arena = slices.Grow(v.arena[:0], 32*len(v.links))
	v.dev = v.dev[:0]
	v.counters = false
	for i := range v.links {
		p := &v.preps[i]
		v.arena = p.prepare(&v.links[i], v.arena)
		v.dev = append(v.dev, p)
		v.counters = v.counters || v.links[i].HasCounters
	}
	slices.SortFunc(v.dev, byDevice)
	// Two links never share a name in the kernel, but a snapshot could
	// catch a rename half applied; the registry would refuse the duplicate
	// series, so keep only the first.
	v.dev = slices.CompactFunc(v.dev, func(a, b *prepared) bool { return a.name == b.name })
	v.info = append(v.info[:0], v.dev...)
	slices.SortFunc(v.info, byInfo)
	return v
}

func (c *Collector) putView(v *view) {
	clear(v.links) // drop the strings and histograms until the next scrape
	clear(v.preps)
	clear(v.dev)
	clear(v.info)
	c.viewMu.Lock()
	if c.spare == nil {
		c.spare = v
	}
	c.viewMu.Unlock()
}

// order returns the links of f in exposition order.
func (v *view) order(f *family) []*prepared {
	if f.byInfo {
		return v.info
	}
	return v.dev
}

// empty reports whether f has no samples in v; empty families are left out
// entirely, as the registry leaves them out.
func (v *view) empty(f *family) bool {
	if !f.link {
		return false
	}
	return len(v.dev) == 0 || (f.has != nil && !v.counters)
}

// flushSize is how much rendered text is buffered before it is written out.
const flushSize = 32 << 10

// writeFamily renders the samples of a link family in order, handing the
// text to flush whenever flushSize of it has accumulated.
func (r *renderer) writeFamily(f *family, order []*prepared, flush func([]byte)) {
	for _, p := range order {
		if f.has != nil && !f.has(p.l) {
			continue
		}
		f.write(r, f, p)
		if len(r.b) >= flushSize {
			flush(r.b)
			r.b = r.b[:0]
		}
	}
}

// --- gzip -------------------------------------------------------------------

// A gzip scrape is assembled from cached pieces. The link families' samples
// are cut into blocks of about blockLinks links, and each block's text of
// each family is kept compressed, as a self-contained run of deflate blocks
// ending in a sync flush, with its CRC-32 and length. Pieces like these can
// be concatenated into one deflate stream, and their CRCs combined, so a
// scrape recompresses only the blocks whose links changed (their Gen) and
// the few kilobytes of other metrics. Block boundaries are where a link's
// name hashes to a multiple of blockLinks, so that a link added or removed
// changes only its own block.
//
// Chunks are compressed at BestSpeed, whose writer resets without clearing
// tables. The cache holds about 270 bytes per link (with the default
// buckets), 60 % more than promhttp's gzip of the whole text at the default
// level: the price of compressing small pieces independently.

const (
	blockLinks    = 16
	maxBlockLinks = 4 * blockLinks
	// gzipCacheTTL is how long a format's cache lives without scrapes.
	gzipCacheTTL = 10 * time.Minute
)

// A chunk is a compressed piece of the exposition.
type chunk struct {
	data  []byte // deflate blocks, byte aligned, not final
	crc   uint32 // CRC-32 of the uncompressed text
	shift uint32 // crcShift(n)
	n     int64  // length of the uncompressed text
}

// A blockKey identifies what a link contributes to a block's text.
type blockKey struct {
	index  int32
	gen    uint64
	master string
}

// A block is the cached compressed text of consecutive links: one chunk per
// link family (nil where the links have no samples of it).
type block struct {
	info   bool // in the order of linkwatch_link_info, holding only it
	keys   []blockKey
	chunks []*chunk
}

// A gzipCache holds the blocks of one text format.
type gzipCache struct {
	mu       sync.Mutex
	om       bool
	r        *renderer
	fw       *flate.Writer
	zbuf     bytes.Buffer
	blocks   map[uint64]*block // by hash of their keys
	next     map[uint64]*block
	lastUsed atomic.Int64 // Unix nanoseconds
	keys     []blockKey
}

var hashSeed = maphash.MakeSeed()

// linkFamilyIndex numbers the link families for their chunks in a block.
var linkFamilyIndex = func() map[*family]int {
	m := map[*family]int{}
	for _, f := range families {
		if f.link {
			m[f] = len(m)
		}
	}
	return m
}()

// The link families in device order, and the one in info order.
var deviceFamilies, infoFamilies = func() (dev, info []*family) {
	for _, f := range families {
		switch {
		case f.link && f.byInfo:
			info = append(info, f)
		case f.link:
			dev = append(dev, f)
		}
	}
	return dev, info
}()

// blocksOf cuts order into blocks and returns the cached block of each,
// compressing the ones not cached. info tells the order of
// linkwatch_link_info from the device order. c.mu must be held.
func (c *gzipCache) blocksOf(order []*prepared, info bool, out []*block) []*block {
	fams := deviceFamilies
	if info {
		fams = infoFamilies
	}
	for len(order) > 0 {
		n := 0
		for n < len(order) {
			n++
			if n == maxBlockLinks || maphash.String(hashSeed, order[n-1].name)%blockLinks == 0 {
				break
			}
		}
		members := order[:n]
		order = order[n:]
		c.keys = c.keys[:0]
		var h maphash.Hash
		h.SetSeed(hashSeed)
		var buf [12]byte
		for _, p := range members {
			k := blockKey{p.l.Index, p.l.Gen, p.master}
			c.keys = append(c.keys, k)
			binary.LittleEndian.PutUint32(buf[0:4], uint32(k.index))
			binary.LittleEndian.PutUint64(buf[4:12], k.gen)
			h.Write(buf[:])
			h.WriteString(k.master)
		}
		if info {
			h.WriteByte(1)
		}
		sum := h.Sum64()
		b := c.blocks[sum]
		if b == nil || b.info != info || !slices.Equal(b.keys, c.keys) {
			b = c.compress(members, fams)
			b.info = info
		}
		c.next[sum] = b
		out = append(out, b)
	}
	return out
}

// compress renders and compresses a block of links for the given families.
func (c *gzipCache) compress(members []*prepared, fams []*family) *block {
	b := &block{chunks: make([]*chunk, len(linkFamilyIndex))}
	for _, p := range members {
		b.keys = append(b.keys, blockKey{p.l.Index, p.l.Gen, p.master})
	}
	for _, f := range fams {
		c.r.b = c.r.b[:0]
		for _, p := range members {
			if f.has == nil || f.has(p.l) {
				f.write(c.r, f, p)
			}
		}
		if len(c.r.b) > 0 {
			b.chunks[linkFamilyIndex[f]] = c.chunk(c.r.b)
		}
	}
	return b
}

// chunk compresses text into a chunk. A fresh writer for each chunk: its
// matches must not reach back into text it did not compress itself.
func (c *gzipCache) chunk(text []byte) *chunk {
	c.zbuf.Reset()
	c.fw.Reset(&c.zbuf)
	_, _ = c.fw.Write(text) // writes to a bytes.Buffer cannot fail
	_ = c.fw.Flush()
	return &chunk{
		data:  bytes.Clone(c.zbuf.Bytes()),
		crc:   crc32.ChecksumIEEE(text),
		shift: crcShift(int64(len(text))),
		n:     int64(len(text)),
	}
}

// plan lays out a gzip scrape of v in format c.om: the families of v merged
// by name with others. It returns the chunks to concatenate: cached ones for
// the link families, and fresh ones for the rest, compressed from text
// written to fresh. They stay valid after c.mu is released: chunks are never
// changed once made.
func (c *gzipCache) plan(v *view, others []*dto.MetricFamily, keep func(name string) bool,
	encodeOther func(w io.Writer, mf *dto.MetricFamily) error, fresh *bytes.Buffer, now time.Time,
) ([]*chunk, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastUsed.Store(now.UnixNano())
	if c.next == nil {
		c.next = map[uint64]*block{}
	}
	devBlocks := c.blocksOf(v.dev, false, nil)
	infoBlocks := c.blocksOf(v.info, true, nil)
	c.blocks, c.next = c.next, c.blocks
	clear(c.next)

	var pieces []*chunk
	cut := func() {
		if fresh.Len() > 0 {
			pieces = append(pieces, c.chunk(fresh.Bytes()))
			fresh.Reset()
		}
	}
	err := mergeFamilies(others, keep, func(mf *dto.MetricFamily) error {
		return encodeOther(fresh, mf)
	}, func(f *family) error {
		if v.empty(f) {
			return nil
		}
		fresh.Write(f.header[b2i(c.om)])
		if !f.link {
			c.r.b = c.r.b[:0]
			f.writeGlobal(c.r, f, &v.stats, len(v.links))
			fresh.Write(c.r.b)
			return nil
		}
		cut()
		blocks := devBlocks
		if f.byInfo {
			blocks = infoBlocks
		}
		i := linkFamilyIndex[f]
		for _, b := range blocks {
			if ch := b.chunks[i]; ch != nil {
				pieces = append(pieces, ch)
			}
		}
		return nil
	})
	if c.om {
		fresh.WriteString("# EOF\n")
	}
	cut()
	return pieces, err
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// gzipHeader is a gzip member header without name, time or extra fields.
var gzipHeader = []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}

// writeGzip writes chunks as one gzip member.
func writeGzip(w io.Writer, chunks []*chunk) error {
	if _, err := w.Write(gzipHeader); err != nil {
		return err
	}
	var crc uint32
	var size int64
	for _, ch := range chunks {
		crc = crcCombine(crc, ch.crc, ch.shift)
		size += ch.n
		if _, err := w.Write(ch.data); err != nil {
			return err
		}
	}
	var trailer [10]byte
	trailer[0] = 0x03 // a final, empty block with fixed Huffman codes
	binary.LittleEndian.PutUint32(trailer[2:6], crc)
	binary.LittleEndian.PutUint32(trailer[6:10], uint32(size))
	_, err := w.Write(trailer[:])
	return err
}

// mergeFamilies calls other for each of others and ours for each of the
// collector's families, all in name order, as the registry orders the
// families of all its collectors, skipping those keep refuses.
func mergeFamilies(others []*dto.MetricFamily, keep func(string) bool,
	other func(*dto.MetricFamily) error, ours func(*family) error,
) error {
	i, j := 0, 0
	for i < len(others) || j < len(families) {
		if j == len(families) || (i < len(others) && others[i].GetName() < families[j].name) {
			mf := others[i]
			i++
			if keep(mf.GetName()) {
				if err := other(mf); err != nil {
					return err
				}
			}
			continue
		}
		f := families[j]
		j++
		if keep(f.name) {
			if err := ours(f); err != nil {
				return err
			}
		}
	}
	return nil
}
