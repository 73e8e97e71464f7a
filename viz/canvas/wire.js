// wire.js: one part as viz/tiles.py pack() writes it: b"ATC1", uint32 header length (little-endian), the JSON
// header, then the 8-byte aligned buffers; in the header an array is {"$": index, "dtype", "shape"}.

const CTORS = { u1: Uint8Array, u2: Uint16Array, u4: Uint32Array, f4: Float32Array };

// bytes -> the part (arrays as typed arrays with a .shape), or null if these are not a part's bytes
function unpack(u8) {
  if (!(u8 instanceof Uint8Array) || u8.length < 8 || u8[0] !== 65 || u8[1] !== 84 || u8[2] !== 67 || u8[3] !== 49) {
    return null;
  }
  const n = new DataView(u8.buffer, u8.byteOffset, 8).getUint32(4, true);
  const header = JSON.parse(new TextDecoder().decode(u8.subarray(8, 8 + n)));
  const start = Math.ceil((8 + n) / 8) * 8;
  const spans = header.$buffers || [];
  delete header.$buffers;
  const walk = (x) => {
    if (Array.isArray(x)) return x.map(walk);
    if (x && typeof x === "object") {
      if (typeof x.$ === "number" && x.dtype) {
        const [off, size] = spans[x.$];
        const Ctor = CTORS[x.dtype];
        let b = u8.subarray(start + off, start + off + size);
        if (b.byteOffset % Ctor.BYTES_PER_ELEMENT) b = b.slice(); // the message buffer need not be aligned
        const arr = Ctor === Uint8Array ? b : new Ctor(b.buffer, b.byteOffset, size / Ctor.BYTES_PER_ELEMENT);
        arr.shape = x.shape;
        return arr;
      }
      const o = {};
      for (const [k, v] of Object.entries(x)) o[k] = walk(v);
      return o;
    }
    return x;
  };
  return walk(header);
}

// labels_blob: UTF-8 tokens, newline-separated
const decodeLabels = (blob) => (blob ? new TextDecoder().decode(blob).split("\n") : null);
