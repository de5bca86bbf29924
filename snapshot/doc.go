// Package snapshot owns the checkpoint file format that every raftkv state
// machine uses for FSM.Persist and FSM.Restore.
//
// A stream is self-checking so that a damaged checkpoint is refused as a
// whole instead of being loaded as half a state. Layout (integers are big
// endian):
//
//	header:  magic "RKVSNAP\x00" (8 bytes)
//	         format version       uint16 (currently 1)
//	         kind                 uint16 length + bytes (e.g. "kv", "registry")
//	         group                uint16 length + bytes (raft group name)
//	         last index           uint64
//	         last term            uint64 (0 when unknown)
//	         header CRC32C        uint32 over every header byte before it
//	records: tag 0x01, payload length uint32, payload,
//	         CRC32C uint32 over the length and the payload
//	trailer: tag 0x02, record count uint64,
//	         CRC32C uint32 over every byte of the stream before this field
//
// The per-record CRC lets a reader name the damaged record; the trailer's
// count and whole-stream checksum catch what per-record checks cannot:
// dropped, duplicated or reordered records and truncation at a record
// boundary. Record payloads are opaque to this package; each state machine
// defines its own record encoding and stores its identity in the header's
// kind field.
//
// Because records are handed to the caller before the trailer has been
// seen, a consumer must treat everything it read as provisional until
// Reader.Next returns io.EOF, which it does only after the trailer has been
// verified. Every form of damage is reported as an error wrapping ErrCorrupt.
package snapshot
