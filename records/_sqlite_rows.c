/* Rows into SQLite on the connection Python's sqlite3 module already holds: records.bulk's
 * accelerator for the sync's large INSERTs.
 *
 * `cursor.executemany` spends more time per row in the sqlite3 module (type dispatch, a copy of
 * every text value, the GIL released and taken back around every row) than SQLite spends
 * inserting it: half of a million-staff first load's insert time (benchmarks/README.md). This
 * module binds each row of a list of tuples straight to one prepared statement and steps it,
 * on the SAME sqlite3* handle as the Python connection, so the rows go into the run's own open
 * transaction. It never opens a handle of its own and never links a SQLite of its own: the
 * SQLite functions are looked up in the library the `_sqlite3` module itself uses (two SQLite
 * copies in one process break each other's POSIX locks).
 *
 * insert_rows(connection, sql, rows) -> number of leading rows inserted.
 * It stops, and leaves the rest to the caller, at the first row it does not take as is: a row
 * that is not a tuple of the statement's parameter count, a value that is not None, int, float,
 * str or bytes, or a step that fails (a constraint, a busy database). The row it stops at is not
 * inserted (a failed INSERT undoes itself), so the caller runs the rest through the driver,
 * which converts or raises exactly as it always did. With no transaction open it inserts
 * nothing: each step would commit on its own; nor for more than one statement or one that
 * returns rows.
 *
 * The GIL stays held for the whole list (a batch of 2 000 rows: a few milliseconds), where the
 * driver gives it up around every row: SQLite waits for a lock only when it takes one, and a
 * transaction that has begun writing already holds the write lock.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>

typedef struct sqlite3 sqlite3;
typedef struct sqlite3_stmt sqlite3_stmt;
#define SQLITE_OK 0
#define SQLITE_DONE 101
#define SQLITE_STATIC ((void (*)(void *))0)

static int (*prepare_v2)(sqlite3 *, const char *, int, sqlite3_stmt **, const char **);
static int (*bind_parameter_count)(sqlite3_stmt *);
static int (*bind_null)(sqlite3_stmt *, int);
static int (*bind_int64)(sqlite3_stmt *, int, long long);
static int (*bind_double)(sqlite3_stmt *, int, double);
static int (*bind_text)(sqlite3_stmt *, int, const char *, int, void (*)(void *));
static int (*bind_blob)(sqlite3_stmt *, int, const void *, int, void (*)(void *));
static int (*step)(sqlite3_stmt *);
static int (*reset)(sqlite3_stmt *);
static int (*finalize)(sqlite3_stmt *);
static int (*get_autocommit)(sqlite3 *);
static int (*column_count)(sqlite3_stmt *);

/* CPython's sqlite3.Connection begins with its sqlite3* handle (Modules/_sqlite/connection.h,
 * 3.11 to 3.13; records.bulk loads this module only on versions where that was checked). */
typedef struct {
    PyObject_HEAD
    sqlite3 *db;
} ConnectionHead;

static PyTypeObject *connection_type;

/* Binds one row; 0 when a value is of a type left to the driver (or does not fit SQLite). */
static int bind_row(sqlite3_stmt *stmt, PyObject *row, int count) {
    for (int i = 0; i < count; i++) {
        PyObject *value = PyTuple_GET_ITEM(row, i);
        int rc;
        if (value == Py_None) {
            rc = bind_null(stmt, i + 1);
        } else if (PyUnicode_CheckExact(value)) {
            Py_ssize_t size;
            const char *text = PyUnicode_AsUTF8AndSize(value, &size);
            if (text == NULL || size > INT_MAX) {
                PyErr_Clear();
                return 0;
            }
            /* STATIC: the text lives in the str, which the row holds until the step is done. */
            rc = bind_text(stmt, i + 1, text, (int)size, SQLITE_STATIC);
        } else if (PyLong_Check(value)) { /* bool and int subclasses too, as the driver binds them */
            int overflow;
            long long number = PyLong_AsLongLongAndOverflow(value, &overflow);
            if (overflow || (number == -1 && PyErr_Occurred())) {
                PyErr_Clear();
                return 0;
            }
            rc = bind_int64(stmt, i + 1, number);
        } else if (PyFloat_CheckExact(value)) {
            rc = bind_double(stmt, i + 1, PyFloat_AS_DOUBLE(value));
        } else if (PyBytes_CheckExact(value)) {
            if (PyBytes_GET_SIZE(value) > INT_MAX)
                return 0;
            rc = bind_blob(stmt, i + 1, PyBytes_AS_STRING(value), (int)PyBytes_GET_SIZE(value), SQLITE_STATIC);
        } else {
            return 0;
        }
        if (rc != SQLITE_OK)
            return 0;
    }
    return 1;
}

static PyObject *insert_rows(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *connection, *rows;
    const char *sql;
    Py_ssize_t sql_size;
    if (!PyArg_ParseTuple(args, "Os#O!", &connection, &sql, &sql_size, &PyList_Type, &rows))
        return NULL;
    if (!PyObject_TypeCheck(connection, connection_type)) {
        PyErr_SetString(PyExc_TypeError, "insert_rows() needs a sqlite3.Connection");
        return NULL;
    }
    sqlite3 *db = ((ConnectionHead *)connection)->db;
    if (db == NULL || get_autocommit(db) || sql_size > INT_MAX)
        return PyLong_FromLong(0); /* closed, or no transaction open: the driver's way */
    sqlite3_stmt *stmt = NULL;
    const char *tail = NULL;
    if (prepare_v2(db, sql, (int)sql_size, &stmt, &tail) != SQLITE_OK || stmt == NULL) {
        finalize(stmt);
        return PyLong_FromLong(0); /* the driver reports what is wrong with the statement */
    }
    while (tail != NULL && tail < sql + sql_size && Py_ISSPACE(*tail))
        tail++;
    if ((tail != NULL && tail < sql + sql_size) || column_count(stmt) != 0) {
        /* More than one statement (the driver refuses it), or one that returns rows
         * (RETURNING: its first step would write, and stopping there would write it twice). */
        finalize(stmt);
        return PyLong_FromLong(0);
    }
    int count = bind_parameter_count(stmt);
    Py_ssize_t done = 0, total = PyList_GET_SIZE(rows);
    for (; done < total; done++) {
        PyObject *row = PyList_GET_ITEM(rows, done);
        if (!PyTuple_CheckExact(row) || PyTuple_GET_SIZE(row) != count || !bind_row(stmt, row, count))
            break;
        int rc = step(stmt);
        reset(stmt);
        if (rc != SQLITE_DONE)
            break;
    }
    finalize(stmt);
    return PyLong_FromSsize_t(done);
}

static PyMethodDef methods[] = {
    {"insert_rows", insert_rows, METH_VARARGS,
     "insert_rows(connection, sql, rows) -> how many leading rows were inserted (see the module's source)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "records._sqlite_rows", NULL, -1, methods, NULL, NULL, NULL, NULL,
};

#define LOOK_UP(pointer, name)                                                  \
    if (!(*(void **)&pointer = dlsym(library, name))) {                         \
        PyErr_SetString(PyExc_ImportError, "_sqlite3's SQLite has no " name);   \
        return NULL;                                                            \
    }

PyMODINIT_FUNC PyInit__sqlite_rows(void) {
    PyObject *driver = PyImport_ImportModule("_sqlite3");
    if (driver == NULL)
        return NULL;
    connection_type = (PyTypeObject *)PyObject_GetAttrString(driver, "Connection");
    PyObject *path = PyObject_GetAttrString(driver, "__file__");
    Py_DECREF(driver);
    if (connection_type == NULL || path == NULL || !PyUnicode_Check(path)) {
        Py_XDECREF(path);
        PyErr_SetString(PyExc_ImportError, "_sqlite3 is not an extension module here");
        return NULL;
    }
    /* The already loaded _sqlite3: a lookup through its handle searches it and the libraries
     * it was loaded with, i.e. exactly the SQLite it runs on. */
    void *library = dlopen(PyUnicode_AsUTF8(path), RTLD_NOLOAD | RTLD_LAZY);
    Py_DECREF(path);
    if (library == NULL) {
        PyErr_SetString(PyExc_ImportError, "cannot find the SQLite that _sqlite3 uses");
        return NULL;
    }
    LOOK_UP(prepare_v2, "sqlite3_prepare_v2")
    LOOK_UP(bind_parameter_count, "sqlite3_bind_parameter_count")
    LOOK_UP(bind_null, "sqlite3_bind_null")
    LOOK_UP(bind_int64, "sqlite3_bind_int64")
    LOOK_UP(bind_double, "sqlite3_bind_double")
    LOOK_UP(bind_text, "sqlite3_bind_text")
    LOOK_UP(bind_blob, "sqlite3_bind_blob")
    LOOK_UP(step, "sqlite3_step")
    LOOK_UP(reset, "sqlite3_reset")
    LOOK_UP(finalize, "sqlite3_finalize")
    LOOK_UP(get_autocommit, "sqlite3_get_autocommit")
    LOOK_UP(column_count, "sqlite3_column_count")
    return PyModule_Create(&module_def);
}
