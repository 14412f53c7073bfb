// Package store keeps tokens where they belong: the OS keychain by default,
// an encrypted file, memory, or (only by explicit opt-in) a plaintext file.
//
// Most users will use client.New, which opens a store and wires it to the
// token cache; use this package directly to choose or inspect the storage.
//
// # Using it
//
// [Open] returns a [Store]; like every tokenward constructor it takes
// option functions that set the fields of [Options]. Entries are [Entry]
// values (tokenward's own versioned schema, not a raw oauth2.Token dump:
// [EntryFromToken] and [Entry.Token] convert) kept under a name, usually
// [Key.String]:
//
//	st, err := store.Open(ctx)                        // the OS keychain
//	st, err = store.Open(ctx, func(o *store.Options) { o.Mode = store.ModeMemory })
//	name := store.Key{Issuer: iss, ClientID: id, Scopes: scopes}.String()
//	err = st.Save(ctx, name, store.EntryFromToken(tok)) // verified after write
//	e, err := st.Load(ctx, name)                       // errors.Is(err, store.ErrNotFound)
//	unlock, err := st.Lock(ctx, name)                  // cross-process
//	err = st.CheckWrite(ctx)                           // could a Save store tokens now?
//
// Every method is safe for concurrent use. All but [Store.Status] take a
// context and return by the earlier of its deadline and Options.Timeout
// (5 s), except that [Store.Lock] waits for a lock held elsewhere until
// Options.LockTimeout (60 s).
//
// [Store.CheckWrite] touches no entry: it writes, reads back and deletes an
// item of its own (keychain) or a temporary file (file modes), then does
// the same in the lock directory. A program calls it before it asks a
// person to sign in, so that nobody approves a login whose tokens could
// not be kept; on a desktop it may show the keychain's unlock prompt,
// which is the moment to show one.
//
// # Modes
//
// The mode comes from Options.Mode, else the TOKENWARD_STORE environment
// variable, else "keychain". There is no automatic fallback: when the
// keychain is unavailable, Open fails with [ErrUnavailable], whose message
// names the opt-ins, and it writes nothing to disk. A locked keychain
// ([ErrLocked]) or one that does not answer ([ErrTimeout]) is never a
// reason to change mode either: tokens silently written to a file instead
// would be a downgrade nobody chose, so the user decides.
//
//   - keychain (default): the Secret Service on Linux and the BSDs
//     (gnome-keyring, KWallet, KeePassXC, over D-Bus), the login keychain on
//     macOS (through /usr/bin/security), Credential Manager on Windows, all
//     through github.com/zalando/go-keyring behind the [Backend] interface.
//   - encrypted-file: for headless machines. One file per entry, AES-256-GCM
//     with a key derived by scrypt (N=2^15, r=8, p=1, random salt recorded
//     in each file's header) from Options.Passphrase or
//     TOKENWARD_PASSPHRASE. The header and the entry's id are
//     authenticated, so a wrong passphrase, a modified byte or a file
//     copied to another name is [ErrCorrupt] and yields no plaintext at
//     all. The derivation is slow on purpose (tens of milliseconds, seconds
//     on a loaded machine), so Open does it, once: for the salts of the
//     files already in the directory, which new files share, or for a new
//     random salt. No Load, Save or Delete spends its deadline on it. A
//     file's header may name only the parameters a writer uses, so a
//     corrupt or crafted file cannot make a Load derive a key at the cost
//     it names (it is ErrCorrupt before any derivation).
//   - memory: process memory only, for tests, CI and containers.
//   - plaintext-file: unencrypted files, only when named explicitly; it
//     logs a warning on every Open and [Store.Status] carries a warning.
//
// The file modes write 0600 files into a 0700 directory (default
// os.UserConfigDir()/tokenward, Options.Dir) by writing a temporary file,
// fsyncing it and renaming it over the old one, and they refuse files or a
// directory that group or others can access ([ErrInsecurePermissions]; on
// Windows the profile directory's ACL applies instead). Lock files live in
// os.UserCacheDir()/tokenward/locks (Options.LockDir).
//
// # Names
//
// A name may be any non-empty UTF-8 string of up to 4096 bytes. No backend
// and no file path ever sees it: items and files are named "tw1-" plus the
// base32 SHA-256 of the name, so quoting bugs (a backslash dropped by
// macOS security), separators (Windows' "service:user" target name, which
// makes ("a:b", "c") and ("a", "b:c") one credential) and "../" can
// neither rename, alias nor escape anything. The name is stored inside the
// entry and compared on load. The only other items are those of
// [Store.CheckWrite], named "tw1-check-" and 16 hex digits.
//
// The hash is an item's identity; what a person sees in the keychain is
// only decoration. On the Secret Service (Seahorse and other keyring
// managers on Linux) the store gives the items of an entry a label that
// names the credential, after every write that commits it:
//
//	tokenward: login.example.com, client my-cli, profile alice@example.com, scopes email openid
//	tokenward: login.example.com, profile default, role discovery
//
// and chunks add " (part i of n)". A name made by [Key.String] shows the
// issuer's host (never its user information, path or query), the client
// ID, the profile, the scopes and the role; any other name shows none of
// itself ("tokenward: stored entry"). Every part is printable ASCII, cut
// at 64 bytes, and the label at 256. The label is the Secret Service
// item's Label property, set over D-Bus without touching the item's
// attributes or secret; nothing reads it back, and failing to set it fails
// nothing (the entry is saved by then). Items stored before labels existed
// are the same items and read as before; they show go-keyring's label
// ("Password for 'tw1-...' on '<service>'") until the entry's next write.
// On macOS and Windows items keep showing the service name and the hashed
// account: there the visible names are the identity itself (the macOS
// account name, Windows' "<service>:<user>" target name), and making them
// readable would move every stored item and split an entry between old
// and new versions of tokenward that share the keychain; the macOS label
// could only be changed by writing the secret again.
//
// # Keychain layout and crash safety
//
// OS keychains hold small items: 2560 bytes per credential on Windows,
// about 3 KB through the 4096-byte line of `security -i` on macOS, and
// go-keyring reports success for a macOS write of exactly that line length
// that did not happen (go-keyring#153). Entries of up to [MaxEntrySize]
// (256 KiB; 64 KB round-trips are tested) are therefore chunked:
//
//	<id>              manifest {v, gen, n, len, sha256, [data], [prev]}
//	<id>.g<gen>.c<i>  chunk i of generation gen, base64 of 1536 bytes
//
// An entry of up to 1536 bytes lives inside its manifest (one item). Every
// item stays below 2300 characters, well inside every OS limit. Chunking
// was chosen over envelope encryption (a data key in the keychain and the
// ciphertext in a file) because it keeps tokens entirely in the keychain,
// with no file whose loss, backup or permissions would matter.
//
// A Save writes the chunks of generation gen+1, reading each one back and
// comparing its SHA-256 ([ErrWriteVerify] on a mismatch: macOS can report
// success for a write it dropped), then the
// manifest, which is the commit point, again verified; only then are the
// chunks of the old generation deleted. A crash before the manifest write
// leaves the old manifest and its untouched chunks: the old entry. A crash
// after it leaves the new manifest, all of whose chunks were written and
// verified: the new entry. A reader checks the length and SHA-256 of what
// it assembles, so it never returns a mix. Leftovers are swept by the next
// write: the manifest records the previous generation ("prev"), deleted in
// ascending order so that its last chunk tells whether anything is left,
// and unreferenced chunks of the generation being written are found by
// reading ahead and deleted from the highest down. Delete first replaces a
// chunked entry's manifest with a tombstone (from then on it reads as not
// found), then deletes the chunks, then the tombstone. An unchanged entry
// is not rewritten at all (each write may cost an unlock prompt).
//
// A manifest that cannot be read (garbled, or written by a newer version of
// tokenward) is replaced by the next Save and removed by Delete, and either
// first deletes the chunks that manifest may still own, so that no token
// fragment outlives a logout: the generations named in its text (with
// their chunk counts when it is JSON) and their successors, and
// generations 1 to 4, probed. Chunks of a manifest garbled beyond
// recognition whose generation is above 4 cannot be found and stay behind.
//
// Writes of one name are serialised by a mutex within the process and by an
// advisory lock on <LockDir>/<id>.<scope>.write.lock across processes (taken only
// once the keychain has answered, so a locked or absent keychain leaves no
// file behind). This lock is separate from [Store.Lock], so a caller that
// holds Lock(name) can Save(name).
//
// # Reading while other processes write
//
// A Load takes no lock: the manifest is the commit point, so a reader
// normally sees a whole entry. A reader that races writers of other
// processes can still meet an item that is gone: a chunk of the
// generation it read about, cleaned up by the next Save; the manifest of
// an entry being deleted. On the Secret Service an item can even vanish
// inside one go-keyring Get, which searches for the item and then reads the
// object path the search found: gnome-keyring then answers
// org.freedesktop.DBus.Error.UnknownMethod ("No such interface
// “org.freedesktop.Secret.Item” on object at path ..." or "Object does not
// exist at path ..."), which says nothing about whether the keychain
// works. Such a call is made again (its new search finds the item's
// current value or nothing), a chunk that is missing or fails the checksum
// sends the reader back to the manifest (gone or a tombstone: the entry
// was deleted while it was read, [ErrNotFound]; changed: read again), and
// after three spoiled attempts the reader reads once more while holding the
// entry's write lock, where no writer that uses the same lock directory
// can interfere. So a read racing writers never reports the keychain
// unavailable or the entry corrupt; only a read under the lock may call an
// entry corrupt. Delete treats an item that vanished between its search
// and its deletion as deleted.
//
// # Deadlines
//
// go-keyring's calls take no context, and on Linux a locked collection
// whose unlock prompt never completes blocks forever. Each backend call
// therefore runs in a goroutine; when the deadline passes the caller gets
// [ErrTimeout] at once, and until the hung call returns every later call
// fails fast with ErrTimeout instead of starting another. The OS keychain
// admits one call at a time per process, so at most one goroutine is ever
// left behind. A call's result travels back through a buffered channel,
// never through a variable its caller shares: when the caller has given
// up, the late result is dropped, and no caller ever sees it.
//
// # Availability
//
// [Available] (and Open in keychain mode) checks the keychain within about
// a second without side effects. On Linux it connects only to the bus named
// by DBUS_SESSION_BUS_ADDRESS, because godbus, which go-keyring uses, would
// otherwise autolaunch one with dbus-launch (starting a bus nobody asked
// for, on machines that have no keychain), and it accepts a Secret Service
// that owns org.freedesktop.secrets or is D-Bus activatable, as
// gnome-keyring is. When the service is running it also reads the Locked
// property of the collection go-keyring stores items in (the "login"
// collection when the service lists it, else the "default" alias): a
// locked keyring fails Open with [ErrLocked], whose message says how to
// unlock it and names the opt-ins, instead of failing the first read or
// waiting on an unlock prompt at startup. Reading a property never shows a
// prompt. A service without any keyring is ErrLocked too, since creating
// one needs a person to choose its password. An activatable service that
// is not running is not started, so its lock state shows on first use;
// [Store.CheckWrite] finds it out before a login.
//
// # Locks
//
// [Store.Lock] is an OS advisory lock (flock, LockFileEx; github.com/gofrs/flock)
// on <LockDir>/<id>.<scope>.lock, polled every 15 ms until it is free, until
// Options.LockTimeout (60 s; [ErrTimeout]) or until the context ends. The
// lock belongs to an open file, so two Lock calls exclude each other even
// within one process, and the kernel releases it when its holder dies, even
// by SIGKILL. In memory mode the lock is in-process.
//
// The scope in the file name is a short hash of where the entries live: the
// keychain service name (compared case-insensitively), so stores with
// different Options.Service values never wait for each other; all file-mode
// stores share one scope. The lock directory itself is the other half of
// the scope: processes exclude each other only when they use the same one.
// It defaults to os.UserCacheDir()/tokenward/locks, so processes of one user
// that run with different XDG_CACHE_HOME or HOME values (a service unit, a
// container, sudo) share the keychain but not the locks; give them the same
// Options.LockDir. Without any lock directory (no HOME, no XDG_CACHE_HOME,
// no Options.LockDir) Open fails with [ErrUnavailable] and a message about
// the lock directory.
//
// # Threat model
//
// The OS keychain protects tokens at rest against other users of the
// machine and against offline theft of the disk. It does not protect them
// from malware running as the same user: on macOS any process of the user
// can run /usr/bin/security, which items written through it trust,
// and the Secret Service hands secrets to any client on the session bus.
// go-keyring talks to the Secret Service over its "plain" transport: the
// secret crosses the local session bus unencrypted (readable only by the
// user's own processes). This package passes no secret through the argv or
// environment of any process it starts (it starts none; go-keyring on macOS
// writes the secret to the stdin of `security -i`), writes no secret to a
// log, and keeps secrets out of error messages: a backend's message is
// included only after long words (tokens, encoded data) and the values
// being written are removed. The encrypted-file mode is as strong as its
// passphrase; the plaintext-file mode protects nothing beyond file
// permissions.
//
// # Errors
//
// Every error matches one sentinel with errors.Is: [ErrNotFound] (also
// keyring.ErrNotFound), [ErrUnavailable], [ErrLocked], [ErrTooLarge],
// [ErrTimeout] (also context.DeadlineExceeded), [ErrInvalidKey],
// [ErrCorrupt] (and [ErrUnsupportedVersion], which matches it),
// [ErrInsecurePermissions], [ErrWriteVerify], [ErrInvalidEntry],
// [ErrInvalidConfig] (the one value every tokenward package returns for a
// bad configuration), or context.Canceled. Messages start with "store: ",
// name the operation, carry a remediation hint and never a secret. Errors
// of go-keyring, godbus, /usr/bin/security exit statuses and Windows error
// codes are mapped to these sentinels; the original stays reachable with
// errors.As.
package store
