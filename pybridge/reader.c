/* asyncio streams' reads, fed in C. A stream whose protocol is asyncio's
 * own StreamReaderProtocol (what start_server and open_connection make)
 * would spend four Python frames per read before its task wakes:
 * data_received, the _stream_reader property, StreamReader.feed_data and
 * _wakeup_waiter. Here the same steps are taken on the same attributes:
 * the bytes are appended to the reader's bytearray straight from the
 * loop's read buffer (no bytes object in between) and the waiting read is
 * woken. Any state those functions would not take their plain path in (a
 * reader at EOF, whose assertion must raise as asyncio's; a read that takes
 * the reader past twice its limit, where it may pause its transport; a
 * buffer a memoryview holds; a waiter not an asyncio Future) is left to the
 * real data_received, which goes on to do the whole of it. asyncio.streams has read so on every version this is
 * built for (3.11-3.15).
 *
 * Whether a protocol is fed here is decided when the transport takes it,
 * as uvloop looks data_received up once per protocol: asyncio's classes
 * exactly, with asyncio's functions (not a subclass, not patched on the
 * class, the protocol or its reader). Anything unexpected there (an error
 * looking them up) leaves the protocol to its own calls. */
#include "goloop.h"

static PyTypeObject *protocol_type, *reader_type;
/* asyncio's own definitions, taken from the classes when goloop is imported */
static PyObject *data_received_fn, *stream_reader_prop, *feed_data_fn, *wakeup_waiter_fn;
static PyObject *str_data_received, *str_stream_reader, *str_feed_data, *str_wakeup_waiter,
    *str_stream_reader_wr, *str_eof, *str_buffer, *str_limit,
    *str_waiter, *str_cancelled, *str_set_result;

/* Whether o's attribute name is want (a function: bound to o). */
static int
attr_is(PyObject *o, PyObject *name, PyObject *want)
{
    PyObject *v = PyObject_GetAttr(o, name);
    if (v == NULL) {
        PyErr_Clear();
        return 0;
    }
    int is = v == want || (PyMethod_Check(v) && PyMethod_GET_FUNCTION(v) == want);
    Py_DECREF(v);
    return is;
}

static PyObject *stream_reader(PyObject *protocol);

int
goloop_feeds_reader(PyObject *protocol)
{
    if (protocol_type == NULL || Py_TYPE(protocol) != protocol_type ||
        !attr_is(protocol, str_data_received, data_received_fn) ||
        !attr_is((PyObject *)protocol_type, str_stream_reader, stream_reader_prop))
        return 0;
    PyObject *reader = stream_reader(protocol);
    if (reader == NULL) {   /* none yet, or none any more: look at the class */
        PyErr_Clear();
        reader = Py_NewRef(reader_type);
    }
    int ok = attr_is(reader, str_feed_data, feed_data_fn) &&
             attr_is(reader, str_wakeup_waiter, wakeup_waiter_fn);
    Py_DECREF(reader);
    return ok;
}

/* protocol._stream_reader: a new reference, or NULL for None (with no
 * exception set) or on error. */
static PyObject *
stream_reader(PyObject *protocol)
{
    PyObject *wr = PyObject_GetAttr(protocol, str_stream_reader_wr);
    if (wr == NULL || wr == Py_None) {
        Py_XDECREF(wr);
        return NULL;
    }
    if (!PyWeakref_Check(wr)) {   /* it would be called, as asyncio calls it */
        PyObject *r = PyObject_CallNoArgs(wr);
        Py_DECREF(wr);
        if (r == Py_None)
            Py_CLEAR(r);
        return r;
    }
    PyObject *r;
#if PY_VERSION_HEX >= 0x030D0000
    if (PyWeakref_GetRef(wr, &r) < 0)
        r = NULL;
#else
    r = PyWeakref_GetObject(wr);
    r = r == Py_None ? NULL : Py_NewRef(r);
#endif
    Py_DECREF(wr);
    return r;
}

/* Whether feed_data(n more bytes) takes its plain path: not at EOF, a
 * bytearray it may resize, within twice the limit, waking an asyncio
 * Future or nothing (the waiter, borrowed: the reader holds it, and
 * nothing runs before it is woken). 1 yes, 0 no, -1 error. */
static int
plain_feed(PyObject *reader, PyObject *buffer, Py_ssize_t n, PyObject **waiter)
{
    PyObject *eof = PyObject_GetAttr(reader, str_eof);
    if (eof == NULL)
        return -1;
    Py_DECREF(eof);
    if (eof != Py_False || !PyByteArray_CheckExact(buffer) ||
        ((PyByteArrayObject *)buffer)->ob_exports > 0)
        return 0;
    /* Under twice the limit, feed_data does not look at its transport or
     * whether it paused it; over it, it may pause the transport. */
    PyObject *limit = PyObject_GetAttr(reader, str_limit);
    if (limit == NULL)
        return -1;
    Py_ssize_t l = PyLong_CheckExact(limit) ? PyLong_AsSsize_t(limit) : -1;
    Py_DECREF(limit);
    if (l < 0) {
        PyErr_Clear();
        return 0;
    }
    if (l > PY_SSIZE_T_MAX / 4 || PyByteArray_GET_SIZE(buffer) + n > 2 * l)
        return 0;
    if ((*waiter = PyObject_GetAttr(reader, str_waiter)) == NULL)
        return -1;
    Py_DECREF(*waiter);
    if (*waiter == Py_None)
        return 1;
    PyObject *future = goloop_future_type();   /* borrowed */
    return future == NULL ? -1 : (PyObject *)Py_TYPE(*waiter) == future;
}

/* _wakeup_waiter(), with the reader's _waiter. */
static int
wakeup(PyObject *reader, PyObject *waiter)
{
    int rc = 0;
    if (waiter != Py_None) {
        Py_INCREF(waiter);
        rc = PyObject_SetAttr(reader, str_waiter, Py_None);
        PyObject *c = rc < 0 ? NULL : PyObject_CallMethodNoArgs(waiter, str_cancelled);
        int cancelled = c == NULL ? -1 : PyObject_IsTrue(c);
        Py_XDECREF(c);
        PyObject *r = cancelled != 0 ? NULL :
            PyObject_CallMethodOneArg(waiter, str_set_result, Py_None);
        rc = cancelled < 0 || (cancelled == 0 && r == NULL) ? -1 : 0;
        Py_XDECREF(r);
        Py_DECREF(waiter);
    }
    return rc;
}

int
goloop_wakeup_waiter(PyObject *reader)
{
    PyObject *waiter = PyObject_GetAttr(reader, str_waiter);
    if (waiter == NULL)
        return -1;
    int rc = wakeup(reader, waiter);
    Py_DECREF(waiter);
    return rc;
}

/* protocol's StreamReader and its _buffer (new references), if n more
 * bytes take feed_data's plain path: 1; 0 if not (or no reader: *reader
 * NULL), -1 error. */
static int
plain_reader(PyObject *protocol, Py_ssize_t n, PyObject **reader, PyObject **buffer,
             PyObject **waiter)
{
    *buffer = NULL;
    if ((*reader = stream_reader(protocol)) == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (Py_TYPE(*reader) != reader_type)
        return 0;
    if ((*buffer = PyObject_GetAttr(*reader, str_buffer)) == NULL)
        return -1;
    return plain_feed(*reader, *buffer, n, waiter);
}

int
goloop_feed_reader(PyObject *protocol, const char *buf, Py_ssize_t n)
{
    PyObject *reader, *buffer, *waiter;
    int rc = plain_reader(protocol, n, &reader, &buffer, &waiter);
    if (rc == 0 && reader == NULL)
        rc = 1;   /* no reader: data_received does nothing */
    else if (rc > 0) {
        Py_ssize_t size = PyByteArray_GET_SIZE(buffer);
        if (PyByteArray_Resize(buffer, size + n) < 0) {
            rc = -1;
        } else {
            memcpy(PyByteArray_AS_STRING(buffer) + size, buf, (size_t)n);
            rc = wakeup(reader, waiter) < 0 ? -1 : 1;
        }
    }
    Py_XDECREF(buffer);
    Py_XDECREF(reader);
    return rc;
}

char *
goloop_reader_lend(LoopObject *loop, PyObject *protocol, Py_ssize_t size)
{
    PyObject *reader, *buffer, *waiter;
    Py_ssize_t base = 0;
    /* size is at least what will be read: where it keeps clear of the
     * reader's limit, so does the read */
    int rc = plain_reader(protocol, size, &reader, &buffer, &waiter);
    if (rc > 0) {
        base = PyByteArray_GET_SIZE(buffer);
        rc = PyByteArray_Resize(buffer, base + size) < 0 ? -1 : 1;
    }
    if (rc <= 0) {
        /* the plain read, then data_received, meet the same state */
        PyErr_Clear();
        Py_XDECREF(buffer);
        Py_XDECREF(reader);
        return NULL;
    }
    loop->read_reader = reader;
    loop->read_bytes = buffer;
    loop->read_base = base;
    return PyByteArray_AS_STRING(buffer) + base;
}

PyObject *
goloop_reader_cut(LoopObject *loop, Py_ssize_t n)
{
    PyObject *reader = loop->read_reader, *buffer = loop->read_bytes;
    loop->read_reader = loop->read_bytes = NULL;
    int rc = PyByteArray_Resize(buffer, loop->read_base + n);
    Py_DECREF(buffer);
    if (rc < 0)
        Py_CLEAR(reader);
    return reader;
}

/* asyncio's definition of name in type, into *slot. */
static int
definition(PyTypeObject *type, const char *name, PyObject **slot)
{
    PyObject *v = PyDict_GetItemString(type->tp_dict, name);   /* borrowed */
    if (v == NULL) {
        PyErr_Format(PyExc_TypeError, "%s has no %s", type->tp_name, name);
        return -1;
    }
    Py_XSETREF(*slot, Py_NewRef(v));
    return 0;
}

/* _set_reader_helpers(StreamReaderProtocol, StreamReader), once, from
 * goloop/_loop.py. */
static PyObject *
set_reader_helpers(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyType_Check(args[0]) || !PyType_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "_set_reader_helpers() takes 2 classes");
        return NULL;
    }
    PyTypeObject *p = (PyTypeObject *)args[0], *r = (PyTypeObject *)args[1];
    if (definition(p, "data_received", &data_received_fn) < 0 ||
        definition(p, "_stream_reader", &stream_reader_prop) < 0 ||
        definition(r, "feed_data", &feed_data_fn) < 0 ||
        definition(r, "_wakeup_waiter", &wakeup_waiter_fn) < 0)
        return NULL;
    Py_XSETREF(protocol_type, (PyTypeObject *)Py_NewRef(p));
    Py_XSETREF(reader_type, (PyTypeObject *)Py_NewRef(r));
    Py_RETURN_NONE;
}

static PyMethodDef reader_functions[] = {
    {"_set_reader_helpers", (PyCFunction)(void (*)(void))set_reader_helpers, METH_FASTCALL,
     NULL},
    {NULL}
};

int
goloop_init_reader(PyObject *module)
{
    if (goloop_intern(&str_data_received, "data_received") < 0 ||
        goloop_intern(&str_stream_reader, "_stream_reader") < 0 ||
        goloop_intern(&str_feed_data, "feed_data") < 0 ||
        goloop_intern(&str_wakeup_waiter, "_wakeup_waiter") < 0 ||
        goloop_intern(&str_stream_reader_wr, "_stream_reader_wr") < 0 ||
        goloop_intern(&str_eof, "_eof") < 0 || goloop_intern(&str_buffer, "_buffer") < 0 ||
        goloop_intern(&str_limit, "_limit") < 0 ||
        goloop_intern(&str_waiter, "_waiter") < 0 ||
        goloop_intern(&str_cancelled, "cancelled") < 0 ||
        goloop_intern(&str_set_result, "set_result") < 0)
        return -1;
    return PyModule_AddFunctions(module, reader_functions);
}
