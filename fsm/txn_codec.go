package fsm

import (
	"encoding/binary"
	"fmt"

	"github.com/raftkv/raftkv/internal/wire"
)

// Transaction payload layout (envelope version 1, types 4..9):
//
//	id, primary                 length-prefixed strings
//	participants                count (uvarint), then each as a string
//	now, deadline, before       uvarints (Unix ns, non-negative)
//	outcome                     1 byte (0 when unused)
//	compares                    count, then each: key, target (1 byte),
//	                            op (1 byte), value (bytes), number (uvarint)
//	success, failure            count, then each: kind (1 byte), key, value
//
// Every command type writes every field; unused ones are empty. That keeps
// one decoder for all of them at the price of a few bytes per entry.

// EncodeTxn returns the log entry of a transaction command. It panics if t
// is not one of the transaction types or if an enumeration in the payload
// is undefined: a programming error that must not reach the log.
func EncodeTxn(t CommandType, c TxnCmd) []byte {
	if !t.isTxn() {
		panic(fmt.Sprintf("fsm: EncodeTxn with %v", t))
	}
	if err := validTxn(&c.Body); err != nil {
		panic("fsm: EncodeTxn: " + err.Error())
	}
	if c.Outcome != 0 && !c.Outcome.valid() {
		panic(fmt.Sprintf("fsm: EncodeTxn: outcome %d", c.Outcome))
	}
	b := []byte{CommandVersion, byte(t)}
	b = appendString(b, c.ID)
	b = appendString(b, c.Primary)
	b = binary.AppendUvarint(b, uint64(len(c.Participants)))
	for _, p := range c.Participants {
		b = appendString(b, p)
	}
	b = binary.AppendUvarint(b, uint64(max(c.Now, 0)))
	b = binary.AppendUvarint(b, uint64(max(c.Deadline, 0)))
	b = binary.AppendUvarint(b, uint64(max(c.Before, 0)))
	b = append(b, byte(c.Outcome))
	return appendTxnBody(b, &c.Body)
}

func appendTxnBody(b []byte, t *Txn) []byte {
	b = binary.AppendUvarint(b, uint64(len(t.Compares)))
	for _, c := range t.Compares {
		b = appendString(b, c.Key)
		b = append(b, byte(c.Target), byte(c.Op))
		b = appendBytes(b, c.Value)
		b = binary.AppendUvarint(b, c.Number)
	}
	for _, ops := range [][]Op{t.Success, t.Failure} {
		b = binary.AppendUvarint(b, uint64(len(ops)))
		for _, o := range ops {
			b = append(b, byte(o.Kind))
			b = appendString(b, o.Key)
			b = appendBytes(b, o.Value)
		}
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func decodeTxn(d *wire.Decoder) (*TxnCmd, error) {
	c := &TxnCmd{ID: string(d.Bytes()), Primary: string(d.Bytes())}
	if n := d.Count(1); n > 0 {
		c.Participants = make([]string, n)
		for i := range c.Participants {
			c.Participants[i] = string(d.Bytes())
		}
	}
	c.Now = readInt64(d)
	c.Deadline = readInt64(d)
	c.Before = readInt64(d)
	c.Outcome = Outcome(d.Byte())
	decodeTxnBody(d, &c.Body)
	if err := d.Finish(); err != nil {
		return nil, err
	}
	if c.Outcome != 0 && !c.Outcome.valid() {
		return nil, fmt.Errorf("outcome %d", c.Outcome)
	}
	if err := validTxn(&c.Body); err != nil {
		return nil, err
	}
	return c, nil
}

func decodeTxnBody(d *wire.Decoder, t *Txn) {
	// Each compare takes at least 5 bytes and each op at least 3, which
	// bounds what a corrupt count can make us allocate.
	if n := d.Count(5); n > 0 {
		t.Compares = make([]Compare, n)
		for i := range t.Compares {
			c := &t.Compares[i]
			c.Key = string(d.Bytes())
			c.Target = CompareTarget(d.Byte())
			c.Op = CompareOp(d.Byte())
			c.Value = d.Bytes()
			c.Number = d.Uvarint()
		}
	}
	for _, ops := range []*[]Op{&t.Success, &t.Failure} {
		if n := d.Count(3); n > 0 {
			*ops = make([]Op, n)
			for i := range *ops {
				o := &(*ops)[i]
				o.Kind = OpKind(d.Byte())
				o.Key = string(d.Bytes())
				o.Value = d.Bytes()
			}
		}
	}
}

// readInt64 reads a non-negative int64 stored as a uvarint.
func readInt64(d *wire.Decoder) int64 {
	v := d.Uvarint()
	if v > 1<<63-1 {
		d.Fail("time out of range")
		return 0
	}
	return int64(v)
}
