/* protobuf-c unpacks nested messages by recursion with no depth limit, and
 * ONNX's schema nests without end (a node's attribute holds a graph of
 * nodes; a type holds a sequence of types): a small hostile file would
 * overflow the stack. This walks the wire format first, descending only
 * into the fields that can recurse, and refuses deep nesting, truncation
 * and bytes that are no protobuf at all, with a message better than
 * protobuf-c's silence. */
#include "onnx_impl.h"

enum { WIRE_MAX_DEPTH = 48 };

/* The messages on ONNX's recursive paths; every other field is a leaf. */
typedef enum kind {
	K_LEAF,
	K_MODEL,
	K_GRAPH,
	K_NODE,
	K_ATTR,
	K_VALUE_INFO,
	K_TYPE,
	K_TYPE_ELEM, /* TypeProto.Sequence and .Optional: elem_type = 1 */
	K_TYPE_MAP,  /* TypeProto.Map: value_type = 2 */
	K_FUNCTION,
	K_TRAINING,
} kind;

static kind field_kind(kind k, uint64_t field)
{
	switch (k) {
	case K_MODEL:
		return field == 7    ? K_GRAPH
		       : field == 20 ? K_TRAINING
		       : field == 25 ? K_FUNCTION
		                     : K_LEAF;
	case K_TRAINING:
		return field == 1 || field == 2 ? K_GRAPH : K_LEAF;
	case K_FUNCTION:
		return field == 7 ? K_NODE : K_LEAF;
	case K_GRAPH:
		return field == 1 ? K_NODE : field >= 11 && field <= 13 ? K_VALUE_INFO : K_LEAF;
	case K_NODE:
		return field == 5 ? K_ATTR : K_LEAF;
	case K_ATTR:
		return field == 6 || field == 11    ? K_GRAPH
		       : field == 14 || field == 15 ? K_TYPE
		                                    : K_LEAF;
	case K_VALUE_INFO:
		return field == 2 ? K_TYPE : K_LEAF;
	case K_TYPE:
		return field == 4 || field == 9 ? K_TYPE_ELEM : field == 5 ? K_TYPE_MAP : K_LEAF;
	case K_TYPE_ELEM:
		return field == 1 ? K_TYPE : K_LEAF;
	case K_TYPE_MAP:
		return field == 2 ? K_TYPE : K_LEAF;
	default:
		return K_LEAF;
	}
}

typedef struct walk {
	ox_net *n;
	const uint8_t *base;
} walk;

/* 0 and the value; 1 when the bytes end inside it; 2 when it is too long */
static int varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	*v = 0;
	for (int shift = 0; shift < 64; shift += 7) {
		if (*p == end)
			return 1;
		uint8_t b = *(*p)++;
		*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return 0;
	}
	return 2;
}

static int truncated(walk *w, const uint8_t *at)
{
	return ox_error(w->n,
	                "not a complete ONNX file: a field at byte %zu runs past the end "
	                "(truncated?)",
	                (size_t)(at - w->base));
}

static int invalid(walk *w, const uint8_t *at)
{
	return ox_error(w->n, "not an ONNX model: no protobuf data at byte %zu",
	                (size_t)(at - w->base));
}

static int message(walk *w, kind k, const uint8_t *p, const uint8_t *end, int depth)
{
	if (depth > WIRE_MAX_DEPTH)
		return ox_error(w->n,
		                "graphs or types nest deeper than %d levels; netcc imports plain "
		                "graphs",
		                WIRE_MAX_DEPTH);
	while (p < end) {
		const uint8_t *at = p;
		uint64_t tag, v;
		int rc = varint(&p, end, &tag);
		if (rc)
			return rc == 1 ? truncated(w, at) : invalid(w, at);
		if (tag >> 3 == 0 || tag >> 3 > 0x1fffffff)
			return invalid(w, at);
		switch (tag & 7) {
		case 0:
			rc = varint(&p, end, &v);
			if (rc)
				return rc == 1 ? truncated(w, at) : invalid(w, at);
			break;
		case 1:
			if (end - p < 8)
				return truncated(w, at);
			p += 8;
			break;
		case 5:
			if (end - p < 4)
				return truncated(w, at);
			p += 4;
			break;
		case 2: {
			rc = varint(&p, end, &v);
			if (rc)
				return rc == 1 ? truncated(w, at) : invalid(w, at);
			if (v > (uint64_t)(end - p))
				return truncated(w, at);
			kind sub = field_kind(k, tag >> 3);
			if (sub != K_LEAF && message(w, sub, p, p + v, depth + 1) != 0)
				return -1;
			p += v;
			break;
		}
		default: /* groups (3, 4) are not in ONNX's schema; 6 and 7 are no wire type */
			return invalid(w, at);
		}
	}
	return 0;
}

int ox_wire_check(ox_net *n, const uint8_t *data, size_t len)
{
	if (len == 0)
		return ox_error(n, "empty file: not an ONNX model");
	walk w = {.n = n, .base = data};
	return message(&w, K_MODEL, data, data + len, 0);
}
