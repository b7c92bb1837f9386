// protobufjs's reader for node Buffers clips a string field whose declared length
// runs past the end of its message (`Math.min(pos + length, len)`), where its
// generic reader, and every other protobuf decoder, refuses the message. A
// truncated CheckRequest was therefore decided on a cut-short action or id. Every
// message verdict decodes arrives as a Buffer, so that one method is replaced by
// one that refuses, with the RangeError the generic reader throws; the deserializer
// then answers INVALID_ARGUMENT and records the request like any other malformed one.
// protobufjs narrows `len` to the end of each nested message and map entry, so this
// one check covers a string at any depth.
//
// It also replaced bytes that are not UTF-8 with U+FFFD, where proto3 requires a
// string field to be UTF-8 and a conforming decoder refuses it: `carl\xff` and
// `carl\xfe` were decided, limited and recorded as one principal, and the log could
// not show what was sent. Such a string is refused here the same way, on every
// service (an Envoy header that is not UTF-8 is refused with its request, fail closed).

import { isUtf8 } from 'node:buffer';
import protobuf from 'protobufjs';

interface BufferReaderState {
  // utf8Slice: what Buffer#toString('utf8', …) ends in, without its argument checks and encoding lookup (bounds are checked here).
  buf: Buffer & { utf8Slice(start: number, end: number): string };
  pos: number;
  len: number;
  uint32(): number;
}

const bufferReader = protobuf.BufferReader.prototype as unknown as { string(this: BufferReaderState): string };

bufferReader.string = function strictString(this: BufferReaderState): string {
  const length = this.uint32();
  const start = this.pos;
  const end = start + length;
  if (end > this.len) throw new RangeError(`index out of range: a string of ${length} bytes at byte ${start} runs past the end of its message (byte ${this.len})`);
  this.pos = end;
  const text = this.buf.utf8Slice(start, end);
  // Only a string holding U+FFFD can have been mended; one that was sent as such is UTF-8 and passes.
  if (text.includes('\uFFFD') && !isUtf8(this.buf.subarray(start, end))) {
    throw new RangeError(`a string of ${length} bytes at byte ${start} is not valid UTF-8, as proto3 strings must be`);
  }
  return text;
};
