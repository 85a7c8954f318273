/* The hot loop of every read in C: plain frames (no keys, no headers) into Message objects.

   `frames.read_frames` calls `read_plain` first; it decodes every plain frame it can and
   stops, leaving the position at the frame, at anything else: a frame with keys or headers
   (decoded in Python), or a frame that fails a check (Python then raises the precise
   FrameError). So the rules of the format and its errors live in frames.py; this file only
   repeats the checks that decide whether a frame is sound, and when in doubt stops.

   Messages are built without calling Message.__init__: the object is allocated and its
   slots are filled from their member descriptors' offsets, found once in `configure`.
   The CRC is computed with the processor's CRC-32C instruction where it has one (SSE4.2,
   `CRC_INSTRUCTION` says), else by the function frames.py uses (google-crc32c's `value`);
   tests check both against crcmod, the reference. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

#define HEADER_SIZE 32
#define MAGIC 0x4C53

static PyTypeObject *message_type = NULL;
static PyObject *no_headers = NULL;
static PyObject *crc_function = NULL;
static Py_ssize_t slot_offset, slot_timestamp, slot_key, slot_headers, slot_value;

static uint32_t u32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static uint64_t u64(const unsigned char *p) { return (uint64_t)u32(p) | ((uint64_t)u32(p + 4) << 32); }

static int slot(PyTypeObject *type, const char *name, Py_ssize_t *offset) {
    PyObject *descr = PyObject_GetAttrString((PyObject *)type, name);
    if (descr == NULL) return -1;
    if (!Py_IS_TYPE(descr, &PyMemberDescr_Type) ||
        ((PyMemberDescrObject *)descr)->d_member->type != T_OBJECT_EX) {
        Py_DECREF(descr);
        PyErr_Format(PyExc_TypeError, "%s.%s is not a slot", type->tp_name, name);
        return -1;
    }
    *offset = ((PyMemberDescrObject *)descr)->d_member->offset;
    Py_DECREF(descr);
    return 0;
}

static PyObject *configure(PyObject *self, PyObject *args) {
    PyObject *type, *headers, *crc;
    if (!PyArg_ParseTuple(args, "O!OO", &PyType_Type, &type, &headers, &crc)) return NULL;
    PyTypeObject *t = (PyTypeObject *)type;
    if (slot(t, "offset", &slot_offset) || slot(t, "timestamp", &slot_timestamp) ||
        slot(t, "key", &slot_key) || slot(t, "headers", &slot_headers) ||
        slot(t, "value", &slot_value))
        return NULL;
    Py_INCREF(type);
    Py_INCREF(headers);
    Py_INCREF(crc);
    Py_XSETREF(message_type, t);
    Py_XSETREF(no_headers, headers);
    Py_XSETREF(crc_function, crc);
    Py_RETURN_NONE;
}

static void set_slot(PyObject *obj, Py_ssize_t offset, PyObject *value) {
    *(PyObject **)((char *)obj + offset) = value; /* steals the reference */
}

static PyObject *message(uint64_t offset, PyObject *timestamp, const unsigned char *value,
                         Py_ssize_t size) {
    PyObject *m = message_type->tp_alloc(message_type, 0);
    if (m == NULL) return NULL;
    PyObject *number = PyLong_FromUnsignedLongLong(offset);
    PyObject *bytes = PyBytes_FromStringAndSize((const char *)value, size);
    if (number == NULL || bytes == NULL) {
        Py_XDECREF(number);
        Py_XDECREF(bytes);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(timestamp);
    Py_INCREF(Py_None);
    Py_INCREF(no_headers);
    set_slot(m, slot_offset, number);
    set_slot(m, slot_timestamp, timestamp);
    set_slot(m, slot_key, Py_None);
    set_slot(m, slot_headers, no_headers);
    set_slot(m, slot_value, bytes);
    return m;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define HAVE_CRC_INSTRUCTION 1
/* CRC-32C with the SSE4.2 instruction, used when the processor has it (checked at import):
   the same values as google-crc32c, without a bytes copy and a Python call per frame. */
__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(const unsigned char *p,
                                                                 Py_ssize_t n) {
    uint64_t crc = 0xFFFFFFFFu;
    uint64_t word;
    for (; n >= 8; p += 8, n -= 8) {
        memcpy(&word, p, 8);
        crc = _mm_crc32_u64(crc, word);
    }
    uint32_t crc32 = (uint32_t)crc;
    for (; n > 0; p++, n--) crc32 = _mm_crc32_u8(crc32, *p);
    return crc32 ^ 0xFFFFFFFFu;
}
static int crc_instruction = 0;
#endif

/* 1: the CRC matches; 0: it does not; -1: error set. */
static int crc_matches(const unsigned char *data, Py_ssize_t size, uint32_t stored) {
#ifdef HAVE_CRC_INSTRUCTION
    if (crc_instruction) return crc32c_sse42(data, size) == stored;
#endif
    PyObject *bytes = PyBytes_FromStringAndSize((const char *)data, size);
    if (bytes == NULL) return -1;
    PyObject *crc = PyObject_CallOneArg(crc_function, bytes);
    Py_DECREF(bytes);
    if (crc == NULL) return -1;
    unsigned long value = PyLong_AsUnsignedLong(crc);
    Py_DECREF(crc);
    if (value == (unsigned long)-1 && PyErr_Occurred()) return -1;
    return value == stored;
}

/* read_plain(buf, pos, frame_offset, first, stop, limit, out) -> (pos, frame_offset) */
static PyObject *read_plain(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 7 || !PyList_Check(args[6])) {
        PyErr_SetString(PyExc_TypeError, "read_plain(buf, pos, frame_offset, first, stop, limit, out)");
        return NULL;
    }
    if (message_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "read_plain before configure");
        return NULL;
    }
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    unsigned long long frame_offset = PyLong_AsUnsignedLongLong(args[2]);
    unsigned long long first = PyLong_AsUnsignedLongLong(args[3]);
    unsigned long long stop = PyLong_AsUnsignedLongLong(args[4]);
    Py_ssize_t limit = PyLong_AsSsize_t(args[5]);
    if (PyErr_Occurred()) return NULL;
    PyObject *out = args[6];
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    const unsigned char *data = view.buf;
    Py_ssize_t size = view.len;
    Py_ssize_t room = limit - PyList_GET_SIZE(out);
    PyObject *result = NULL;

    while (frame_offset < stop && room > 0 && pos >= 0 && size - pos >= HEADER_SIZE + 4) {
        const unsigned char *h = data + pos;
        uint32_t length = u32(h), stored = u32(h + 4), count = u32(h + 24);
        uint64_t base = u64(h + 8), ts = u64(h + 16);
        uint16_t flags = (uint16_t)(h[28] | (h[29] << 8)), magic = (uint16_t)(h[30] | (h[31] << 8));
        if (base != frame_offset || magic != MAGIC || count < 1 || flags != 0) break;
        if ((uint64_t)length < HEADER_SIZE + 4 * (uint64_t)count || (Py_ssize_t)length > size - pos)
            break; /* unsound (Python says why) or not wholly read yet */
        Py_ssize_t end = pos + (Py_ssize_t)length;
        if (base + count > first) {
            int ok = crc_matches(h + 8, (Py_ssize_t)length - 8, stored);
            if (ok < 0) goto done;
            if (!ok) break;
            const unsigned char *lens = h + HEADER_SIZE;
            Py_ssize_t column = pos + HEADER_SIZE + 4 * (Py_ssize_t)count, cursor = column;
            for (uint32_t i = 0; i < count; i++) cursor += u32(lens + 4 * (Py_ssize_t)i);
            if (cursor != end) break;
            uint64_t skip = (first > base ? first : base) - base;
            uint64_t take = count - skip;
            if (take > (uint64_t)room) take = (uint64_t)room;
            PyObject *timestamp = PyLong_FromUnsignedLongLong(ts);
            if (timestamp == NULL) goto done;
            cursor = column;
            for (uint64_t i = 0; i < skip; i++) cursor += u32(lens + 4 * i);
            for (uint64_t i = skip; i < skip + take; i++) {
                uint32_t n = u32(lens + 4 * i);
                PyObject *m = message(base + i, timestamp, data + cursor, n);
                if (m == NULL || PyList_Append(out, m) < 0) {
                    Py_XDECREF(m);
                    Py_DECREF(timestamp);
                    goto done;
                }
                Py_DECREF(m);
                cursor += n;
            }
            Py_DECREF(timestamp);
            room -= (Py_ssize_t)take;
            if (skip + take < count) break; /* `out` filled up inside this frame */
        }
        pos = end;
        frame_offset = base + count;
    }
    result = Py_BuildValue("(nK)", pos, frame_offset);
done:
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"configure", configure, METH_VARARGS, "configure(Message, NO_HEADERS, crc32c)"},
    {"read_plain", (PyCFunction)(void (*)(void))read_plain, METH_FASTCALL,
     "Decode the plain frames of buf from pos into out; (pos, frame_offset) where it stopped."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "logstore._framesc", "Plain frames decoded in C (see frames.py).", -1,
    methods,
};

PyMODINIT_FUNC PyInit__framesc(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    int hardware = 0;
#ifdef HAVE_CRC_INSTRUCTION
    __builtin_cpu_init();
    crc_instruction = hardware = __builtin_cpu_supports("sse4.2") != 0;
#endif
    if (PyModule_AddIntConstant(m, "CRC_INSTRUCTION", hardware) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
