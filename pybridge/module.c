/* The _goloop extension module: its init, the fork guard, and the small
 * helpers the Go side calls (reference counts, the GIL, errors). */
#include <errno.h>
#include <string.h>
#include "goloop.h"
#include "_cgo_export.h"

int goloop_forked = 0;
Helpers goloop_helpers;
PyObject *goloop_str_loop;
PyObject *goloop_kwnames_loop;
PyObject *goloop_str_context;
PyObject *goloop_str_create_task_slow;

void goloop_incref(PyObject *o) { Py_INCREF(o); }
void goloop_decref(PyObject *o) { Py_DECREF(o); }


/* The loop's blocking poll, with the GIL released for the wait: one C call
 * where saving the thread state, epoll_wait and restoring it were three
 * crossings from Go. Returns epoll_wait's count, or -errno. */
int
goloop_poll(int epfd, struct epoll_event *events, int maxevents, int msec)
{
    PyThreadState *ts = PyEval_SaveThread();
    int n = epoll_wait(epfd, events, maxevents, msec);
    int err = errno;
    PyEval_RestoreThread(ts);
    return n < 0 ? -err : n;
}

int
goloop_streams_grow(goloop_streams *m, int fd)
{
    int len = fd + 1 + fd / 2;
    PyObject **t = PyMem_Realloc(m->t, (size_t)len * sizeof(PyObject *));
    if (t == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memset(t + m->len, 0, (size_t)(len - m->len) * sizeof(PyObject *));
    m->t = t;
    m->len = len;
    return 0;
}

void goloop_set_runtime_error(const char *msg) { PyErr_SetString(PyExc_RuntimeError, msg); }

void
goloop_set_closed_error(void)
{
    PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
}

void goloop_set_value_error(const char *msg) { PyErr_SetString(PyExc_ValueError, msg); }

/* The one place an errno from the Go core becomes an OSError subclass
 * (ConnectionResetError, BlockingIOError, ...): OSError(errno, text), whose
 * constructor picks the subclass. With msg NULL the text is strerror's, as
 * the socket module raises it ("[Errno 104] Connection reset by peer"). */
void
goloop_set_os_error(int err, const char *msg)
{
    PyObject *args = Py_BuildValue("(is)", err, msg != NULL ? msg : strerror(err));
    if (args != NULL) {
        PyErr_SetObject(PyExc_OSError, args);
        Py_DECREF(args);
    }
}

PyObject *
goloop_fetch_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *exc, *tb;
    PyErr_Fetch(&type, &exc, &tb);
    PyErr_NormalizeException(&type, &exc, &tb);
    if (tb != NULL) {
        PyException_SetTraceback(exc, tb);
        Py_DECREF(tb);
    }
    Py_XDECREF(type);
    return exc;
#endif
}

void
goloop_restore_exception(PyObject *exc)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyErr_Restore(Py_NewRef(Py_TYPE(exc)), exc, PyException_GetTraceback(exc));
#endif
}

int
goloop_check_forked(void)
{
    if (goloop_forked) {
        PyErr_SetString(PyExc_RuntimeError,
            "goloop cannot be used in a process created by os.fork(): the Go "
            "runtime does not survive fork. Use the 'spawn' or 'forkserver' "
            "multiprocessing start method, or start a new interpreter with "
            "subprocess.");
        return -1;
    }
    return 0;
}

static PyObject *
after_fork_in_child(PyObject *m, PyObject *Py_UNUSED(ignored))
{
    goloop_forked = 1;
    Py_RETURN_NONE;
}

/* Called once by goloop/_loop.py with the Python halves of cold paths. */
static PyObject *
set_helpers(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    Helpers *h = &goloop_helpers;
    PyObject **slots[] = {&h->callback_failed, &h->log_slow, &h->extract_stack, &h->futures,
                          &h->tasks, &h->fileobj_to_fd};
    return goloop_set_helpers("_set_helpers", slots, Py_ARRAY_LENGTH(slots), args, nargs);
}

PyObject *
goloop_set_helpers(const char *name, PyObject **slots[], Py_ssize_t n, PyObject *const *args,
                   Py_ssize_t nargs)
{
    if (nargs != n) {
        PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments", name, n);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        Py_XSETREF(*slots[i], Py_NewRef(args[i]));
    Py_RETURN_NONE;
}

int
goloop_intern(PyObject **s, const char *v)
{
    *s = PyUnicode_InternFromString(v);
    return *s == NULL ? -1 : 0;
}

/* base_events looks futures.Future and tasks.Task up when it makes one,
 * so a replaced class (asyncio's own tests swap in the pure-Python ones)
 * is the one used: a lookup in the module's dict, then, for the error,
 * the module's getattr. */
static PyObject *
module_class(PyObject *module, PyObject **name, const char *s)
{
    if (*name == NULL && (*name = PyUnicode_InternFromString(s)) == NULL)
        return NULL;
    PyObject *cls = PyDict_GetItemWithError(PyModule_GetDict(module), *name);
    if (cls == NULL && !PyErr_Occurred())
        Py_XDECREF(PyObject_GetAttr(module, *name));
    return cls;
}

PyObject *
goloop_future_type(void)
{
    static PyObject *name;
    return module_class(goloop_helpers.futures, &name, "Future");
}

PyObject *
goloop_task_type(void)
{
    static PyObject *name;
    return module_class(goloop_helpers.tasks, &name, "Task");
}

static PyObject *
live_loops(PyObject *m, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLong(GoloopLive());
}

static PyObject *
go_panic(PyObject *m, PyObject *Py_UNUSED(ignored))
{
    if (GoloopPanic() < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"_after_fork_in_child", after_fork_in_child, METH_NOARGS, NULL},
    {"_set_helpers", (PyCFunction)(void (*)(void))set_helpers, METH_FASTCALL, NULL},
    {"_live_loops", live_loops, METH_NOARGS,
     "Number of Go core loops not yet freed (for leak tests)."},
    {"_go_panic", go_panic, METH_NOARGS,
     "Panic in Go behind an export (for the test that panics become RuntimeError)."},
    {NULL}
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_goloop", "goloop's native core (Go, through cgo).", -1,
    module_methods,
};

static int
register_at_fork(PyObject *m)
{
    PyObject *os = PyImport_ImportModule("os");
    if (os == NULL)
        return -1;
    PyObject *hook = PyObject_GetAttrString(m, "_after_fork_in_child");
    PyObject *reg = PyObject_GetAttrString(os, "register_at_fork");
    PyObject *r = NULL;
    if (hook != NULL && reg != NULL) {
        PyObject *kw = Py_BuildValue("{sO}", "after_in_child", hook);
        if (kw != NULL) {
            PyObject *empty = PyTuple_New(0);
            if (empty != NULL)
                r = PyObject_Call(reg, empty, kw);
            Py_XDECREF(empty);
            Py_DECREF(kw);
        }
    }
    Py_XDECREF(hook);
    Py_XDECREF(reg);
    Py_DECREF(os);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

PyMODINIT_FUNC
PyInit__goloop(void)
{
    if (PyType_Ready(&Goloop_LoopType) < 0)
        return NULL;
    goloop_str_loop = PyUnicode_InternFromString("loop");
    if (goloop_str_loop == NULL)
        return NULL;
    goloop_kwnames_loop = PyTuple_Pack(1, goloop_str_loop);
    goloop_str_context = PyUnicode_InternFromString("context");
    goloop_str_create_task_slow = PyUnicode_InternFromString("_create_task_slow");
    if (goloop_kwnames_loop == NULL || goloop_str_context == NULL ||
        goloop_str_create_task_slow == NULL)
        return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL)
        return NULL;
    if (goloop_init_handle_types(m) < 0 ||
        goloop_init_transport(m) < 0 ||
        goloop_init_stream_type(m) < 0 ||
        goloop_init_reader(m) < 0 ||
        goloop_init_sock(m) < 0 ||
        goloop_init_datagram_type(m) < 0 ||
        goloop_init_listener(m) < 0 ||
        PyModule_AddObjectRef(m, "LoopBase", (PyObject *)&Goloop_LoopType) < 0 ||
        PyModule_AddObjectRef(m, "Handle", (PyObject *)goloop_handle_type) < 0 ||
        PyModule_AddObjectRef(m, "TimerHandle", (PyObject *)goloop_timer_type) < 0 ||
        register_at_fork(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
