// protobufjs's reader for node Buffers clips a string field whose declared length
// runs past the end of its message (`Math.min(pos + length, len)`), where its
// generic reader, and every other protobuf decoder, refuses the message. A
// truncated CheckRequest was therefore decided on a cut-short action or id. Every
// message verdict decodes arrives as a Buffer, so that one method is replaced by
// one that refuses, with the RangeError the generic reader throws; the deserializer
// then answers INVALID_ARGUMENT and records the request like any other malformed one.
// protobufjs narrows `len` to the end of each nested message and map entry, so this
// one check covers a string at any depth.

import protobuf from 'protobufjs';

interface BufferReaderState {
  buf: Buffer;
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
  return this.buf.toString('utf8', start, end);
};
