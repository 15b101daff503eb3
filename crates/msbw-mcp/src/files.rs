//! The file tools: `write_file`, `read_file`, `list_files`, over the facade's file API.
//!
//! Declared inside the `server` module (it uses the server's scoping and result helpers); its
//! router is added to the server's in `McpServer::new`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use microsandbox_wrapper::{FileEntry, WrapperError};
use rmcp::handler::server::tool::schema_for_type;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::schemars::JsonSchema;
use rmcp::{ErrorData, tool, tool_router};
use serde::{Deserialize, Serialize};

use super::{Ctx, McpServer, ToolResult, listing, result};
use crate::errors::to_rpc;
use crate::types::{tool_args, tool_outputs};

/// The largest file `read_file` returns to a model (larger files: use a volume or read a part
/// with execute_command).
pub(crate) const MAX_TOOL_READ_BYTES: u64 = 4 * 1024 * 1024;

/// How file content is written in a tool call or result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(rename_all = "lowercase")]
pub(crate) enum Encoding {
    /// Plain text (UTF-8).
    #[default]
    Utf8,
    /// Base64 (standard alphabet): for binary files.
    Base64,
}

tool_args! {
    /// Arguments of `write_file`.
    WriteFileArgs {
        /// The session whose sandbox gets the file. Omit it to create a new session; a session_id
        /// that does not exist yet is created too.
        #[serde(default)]
        session_id: Option<String>,
        /// Where the file goes inside the sandbox, e.g. "/tmp/data.csv" (absolute, or relative to the
        /// sandbox's working folder). Missing folders are created; an existing file is replaced;
        /// ".." is refused.
        path: String,
        /// The file's content: text, or base64 when encoding is "base64".
        content: String,
        /// "utf8" (default) for text, "base64" for binary content.
        #[serde(default)]
        encoding: Option<Encoding>,
    }
}

tool_args! {
    /// Arguments of `read_file`.
    ReadFileArgs {
        /// The session whose sandbox holds the file (from an earlier result).
        session_id: String,
        /// The file's path inside the sandbox, e.g. "/tmp/result.json".
        path: String,
        /// "utf8" to get text (the default; a file that is not valid UTF-8 comes back as base64
        /// anyway), "base64" to always get base64.
        #[serde(default)]
        encoding: Option<Encoding>,
    }
}

tool_args! {
    /// Arguments of `list_files`.
    ListFilesArgs {
        /// The session whose sandbox to look in (from an earlier result).
        session_id: String,
        /// The folder to list (default "."; the sandbox's working folder). Try "/tmp".
        #[serde(default)]
        path: Option<String>,
    }
}

tool_outputs! {
    /// What `write_file` returns.
    WriteFileOutput {
        /// The session: pass it to later calls to use the file.
        session_id: String,
        /// The path written.
        path: String,
        /// How many bytes were written.
        bytes: u64,
        /// Whether this call created the session.
        session_created: bool,
    }
}

tool_outputs! {
    /// What `read_file` returns.
    ReadFileOutput {
        /// The session.
        session_id: String,
        /// The path read.
        path: String,
        /// The content, as `encoding` says.
        content: String,
        /// "utf8" or "base64".
        encoding: Encoding,
        /// The file's size in bytes.
        size: u64,
    }
}

tool_outputs! {
    /// One entry of `list_files`.
    EntryView {
        /// The name in the folder.
        name: String,
        /// The full path (use it with read_file).
        path: String,
        /// "file", "dir", "symlink" or "other".
        kind: String,
        /// Size in bytes (files; 0 for the rest).
        size: u64,
    }
}

tool_outputs! {
    /// What `list_files` returns.
    ListFilesOutput {
        /// The session.
        session_id: String,
        /// The folder listed.
        path: String,
        /// Its entries, sorted by name (links are not followed).
        entries: Vec<EntryView>,
    }
}

impl From<&FileEntry> for EntryView {
    fn from(e: &FileEntry) -> Self {
        EntryView {
            name: e.name.clone(),
            path: e.path.clone(),
            kind: e.kind.as_str().to_owned(),
            size: e.size,
        }
    }
}

fn invalid(what: &str, message: impl Into<String>) -> ErrorData {
    to_rpc(
        &WrapperError::InvalidInput {
            what: what.into(),
            message: message.into(),
        },
        str::to_owned,
    )
}

#[tool_router(router = file_tool_router, vis = "pub(crate)")]
impl McpServer {
    /// Write a file.
    #[tool(
        description = "Write a file into a sandbox session, e.g. data for code to read. Text by default; set encoding \
\"base64\" for binary content. Returns the session_id to pass to execute_code or execute_command, which see the file \
at the same path. Missing folders are created, an existing file is replaced. Read-only volumes refuse writes \
(FILE_PERMISSION_ERROR).",
        output_schema = schema_for_type::<WriteFileOutput>()
    )]
    async fn write_file(&self, Parameters(args): Parameters<WriteFileArgs>, ctx: Ctx) -> ToolResult {
        let scope = self.scope(&ctx);
        let data = match args.encoding.unwrap_or_default() {
            Encoding::Utf8 => args.content.into_bytes(),
            Encoding::Base64 => STANDARD
                .decode(args.content.trim().as_bytes())
                .map_err(|e| invalid("content", format!("is not valid base64: {e}")))?,
        };
        let session = self
            .session_for(&scope, args.session_id)
            .unwrap_or_else(microsandbox_wrapper::manager::naming::session_id);
        let bytes = data.len() as u64;
        let created = self
            .wrapper
            .write_file(&session, &args.path, data)
            .await
            .map_err(|e| scope.rpc(&e))?;
        let out = WriteFileOutput {
            session_id: scope.unwrap(&session),
            path: args.path,
            bytes,
            session_created: created,
        };
        let text = format!(
            "wrote {} bytes to {} in session {}{}",
            out.bytes,
            out.path,
            out.session_id,
            if created { " (new session)" } else { "" }
        );
        Ok(result(&out, text, false))
    }

    /// Read a file.
    #[tool(
        description = "Read a file from a sandbox session, e.g. a result your code wrote. Text comes back as it is; a file \
that is not UTF-8 (or when encoding is \"base64\") comes back base64-encoded. At most 4 MiB: for larger files, read a \
part with execute_command (e.g. head -c). Errors: FILE_NOT_FOUND_ERROR, FILE_TOO_LARGE_ERROR, FILE_TYPE_ERROR (a folder).",
        output_schema = schema_for_type::<ReadFileOutput>()
    )]
    async fn read_file(&self, Parameters(args): Parameters<ReadFileArgs>, ctx: Ctx) -> ToolResult {
        let scope = self.scope(&ctx);
        let session = scope.wrap(&args.session_id);
        let data = self
            .wrapper
            .read_file_limited(&session, &args.path, MAX_TOOL_READ_BYTES)
            .await
            .map_err(|e| scope.rpc(&e))?;
        let size = data.len() as u64;
        let (content, encoding) = match args.encoding.unwrap_or_default() {
            Encoding::Base64 => (STANDARD.encode(&data), Encoding::Base64),
            Encoding::Utf8 => match String::from_utf8(data) {
                Ok(text) => (text, Encoding::Utf8),
                Err(e) => (STANDARD.encode(e.as_bytes()), Encoding::Base64),
            },
        };
        let text = match encoding {
            Encoding::Utf8 => content.clone(),
            Encoding::Base64 => format!("{} ({size} bytes, base64):\n{content}", args.path),
        };
        let out = ReadFileOutput {
            session_id: args.session_id,
            path: args.path,
            content,
            encoding,
            size,
        };
        Ok(result(&out, text, false))
    }

    /// List a folder.
    #[tool(
        description = "List a folder in a sandbox session: names, kinds (file, dir, symlink, other) and sizes, sorted by \
name. Default folder: the sandbox's working folder.",
        output_schema = schema_for_type::<ListFilesOutput>()
    )]
    async fn list_files(&self, Parameters(args): Parameters<ListFilesArgs>, ctx: Ctx) -> ToolResult {
        let scope = self.scope(&ctx);
        let session = scope.wrap(&args.session_id);
        let path = args.path.unwrap_or_else(|| ".".to_owned());
        let entries = self
            .wrapper
            .list_files(&session, &path)
            .await
            .map_err(|e| scope.rpc(&e))?;
        let entries: Vec<EntryView> = entries.iter().map(EntryView::from).collect();
        let text = listing(&entries, &format!("{path} is empty"), |e| match e.kind.as_str() {
            "file" => format!("{} ({} bytes)", e.name, e.size),
            "dir" => format!("{}/", e.name),
            kind => format!("{} ({kind})", e.name),
        });
        let out = ListFilesOutput {
            session_id: args.session_id,
            path,
            entries,
        };
        Ok(result(&out, text, false))
    }
}
