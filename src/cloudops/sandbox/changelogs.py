"""The demo's database change logs, as data: what ``database/changelog/`` of the demo's
deployment package holds for a version (Liquibase formatted SQL, see
``cloudops.dbtool.changelog``).

- 8.5.0 (and anything before): ``0001-ep-8.5.0-schema.sql``, the schema of a small
  commerce store in Elastic Path's naming (settings, catalog, products and SKUs, prices),
  with seed rows: four change sets;
- 8.6.0 and anything later: the same file, unchanged, plus ``0002-ep-8.6.0-catalog.sql``
  with exactly two more change sets (a column, an index).

Every change set is rerunnable (``IF NOT EXISTS``, ``INSERT IGNORE``): the Data Population
Tool's rule for an update killed midway (``cloudops.dbtool.database``).
"""

from __future__ import annotations

from cloudops.versions import version_key

__all__ = ["CHANGELOG_DIR", "SECOND_VERSION", "changelogs_for"]

CHANGELOG_DIR = "database/changelog"
SECOND_VERSION = "8.6.0"
"""From this version on, the package carries the second change log."""

SCHEMA_850 = """\
--liquibase formatted sql

-- Elastic Path commerce schema, 8.5.0 (cloudops demo). Applied change sets must never be
-- edited: a change goes into a new change set, in a new file for a new version.

--changeset ep:8.5.0-settings
--comment: setting definitions and the store's defaults
CREATE TABLE IF NOT EXISTS TSETTINGDEFINITION (
  UIDPK BIGINT NOT NULL PRIMARY KEY,
  PATH VARCHAR(255) NOT NULL,
  DEFAULT_VALUE VARCHAR(255) NULL,
  CONSTRAINT U_SETTINGDEFINITION_PATH UNIQUE (PATH)
);
INSERT IGNORE INTO TSETTINGDEFINITION (UIDPK, PATH, DEFAULT_VALUE) VALUES
  (1, 'COMMERCE/SYSTEM/STORE/defaultCurrency', 'USD'),
  (2, 'COMMERCE/SYSTEM/STORE/defaultLocale', 'en');

--changeset ep:8.5.0-catalog
--comment: the master catalog
CREATE TABLE IF NOT EXISTS TCATALOG (
  UIDPK BIGINT NOT NULL PRIMARY KEY,
  CATALOG_CODE VARCHAR(64) NOT NULL,
  NAME VARCHAR(255) NOT NULL,
  CONSTRAINT U_CATALOG_CODE UNIQUE (CATALOG_CODE)
);
INSERT IGNORE INTO TCATALOG (UIDPK, CATALOG_CODE, NAME) VALUES (1, 'mobee', 'Mobee master catalog');

--changeset ep:8.5.0-product
--comment: products and their SKUs
CREATE TABLE IF NOT EXISTS TPRODUCT (
  UIDPK BIGINT NOT NULL PRIMARY KEY,
  GUID VARCHAR(64) NOT NULL,
  CATALOG_UID BIGINT NOT NULL,
  CONSTRAINT U_PRODUCT_GUID UNIQUE (GUID),
  CONSTRAINT FK_PRODUCT_CATALOG FOREIGN KEY (CATALOG_UID) REFERENCES TCATALOG (UIDPK)
);
CREATE TABLE IF NOT EXISTS TPRODUCTSKU (
  UIDPK BIGINT NOT NULL PRIMARY KEY,
  SKUCODE VARCHAR(64) NOT NULL,
  PRODUCT_UID BIGINT NOT NULL,
  CONSTRAINT U_PRODUCTSKU_CODE UNIQUE (SKUCODE),
  CONSTRAINT FK_SKU_PRODUCT FOREIGN KEY (PRODUCT_UID) REFERENCES TPRODUCT (UIDPK)
);
INSERT IGNORE INTO TPRODUCT (UIDPK, GUID, CATALOG_UID) VALUES (1, 'tablet-10', 1), (2, 'phone-6', 1);
INSERT IGNORE INTO TPRODUCTSKU (UIDPK, SKUCODE, PRODUCT_UID) VALUES
  (1, 'tablet-10-64gb', 1), (2, 'phone-6-black', 2);

--changeset ep:8.5.0-price
--comment: list prices
CREATE TABLE IF NOT EXISTS TBASEAMOUNT (
  UIDPK BIGINT NOT NULL PRIMARY KEY,
  PRICE_LIST_GUID VARCHAR(64) NOT NULL,
  SKU_CODE VARCHAR(64) NOT NULL,
  LIST_VALUE DECIMAL(19, 2) NOT NULL
);
INSERT IGNORE INTO TBASEAMOUNT (UIDPK, PRICE_LIST_GUID, SKU_CODE, LIST_VALUE) VALUES
  (1, 'mobee-usd', 'tablet-10-64gb', 499.00),
  (2, 'mobee-usd', 'phone-6-black', 649.00);
"""

CATALOG_860 = """\
--liquibase formatted sql

-- Elastic Path commerce schema, 8.6.0 (cloudops demo): brands, and prices looked up by SKU.

--changeset ep:8.6.0-product-brand
--comment: a product's brand
ALTER TABLE TPRODUCT ADD COLUMN IF NOT EXISTS BRAND_CODE VARCHAR(64) NULL;

--changeset ep:8.6.0-price-sku-index
--comment: prices are read by SKU code
CREATE INDEX IF NOT EXISTS I_BASEAMOUNT_SKU ON TBASEAMOUNT (SKU_CODE);
"""

_FILES = {
    f"{CHANGELOG_DIR}/0001-ep-8.5.0-schema.sql": ("8.5.0", SCHEMA_850),
    f"{CHANGELOG_DIR}/0002-ep-8.6.0-catalog.sql": (SECOND_VERSION, CATALOG_860),
}


def changelogs_for(version: str) -> dict[str, str]:
    """The change logs of the demo's package ``version``: path in the zip -> text. The
    first file is in every version; each later file from the version that introduced it."""
    wanted = version_key(version)
    return {
        path: text
        for index, (path, (since, text)) in enumerate(_FILES.items())
        if index == 0 or wanted >= version_key(since)
    }
